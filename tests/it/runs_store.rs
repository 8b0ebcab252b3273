//! The runs store against a real PostgreSQL, without a daemon: the queue's claim honours the
//! lock file's regex flags and answers the claim's change, a job's end moves its run's `needs`
//! on in the same change, and steps change as the lifecycle decides.

use crate::support;

use kici_orchestrator::runs::{
    lifecycle::Effect,
    requirements::{Pattern, Requirements},
    state::{JobStatus, RunStatus},
    store::{
        jobs::{
            agent_terminal, job_running, job_terminal, stale_jobs, step_status, Ending, Reporter,
        },
        queue::{claim, start_recovery, NewJob},
        runs::{create_run, NewRun},
    },
};
use std::time::Duration;

use kici_orchestrator::db::{Connector, Pool, PooledClient};
use postgres::Client;
use serde_json::json;
use support::{
    daemon::{cli, stderr},
    pg::PgCluster,
};

/// A migrated database and a pooled connection to it (what the daemon's code gets; the queue's
/// claim keeps its statements prepared on it, and tests that claim twice reuse them).
fn migrated() -> (String, PooledClient) {
    let url = PgCluster::shared().create_database();
    let out = cli(&["db", "migrate", "--database-url", &url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pool = Pool::new(
        Connector::from_url(&url).unwrap(),
        1,
        Duration::from_secs(5),
    );
    let client = pool.get().unwrap();
    (url, client)
}

fn job(run_id: &str, name: &str, requirements: Requirements) -> NewJob {
    NewJob {
        id: kici_orchestrator::crypto::random_uuid(),
        run_id: run_id.to_owned(),
        workflow_name: "basic".into(),
        job_name: name.into(),
        dispatch: json!({"jobConfig": {"name": name}}),
        requirements,
        routing_key: None,
    }
}

fn run(run_id: &str, jobs: Vec<NewJob>, waiting: Vec<NewJob>, needs: &[(&str, &str)]) -> NewRun {
    NewRun {
        run_id: run_id.to_owned(),
        workflow_name: "basic".into(),
        provider: Some("local".into()),
        routing_key: None,
        repo: None,
        git_ref: None,
        sha: None,
        delivery_id: None,
        trigger_event: None,
        trigger_decision: None,
        jobs,
        waiting,
        needs: needs
            .iter()
            .map(|(j, u)| (j.to_string(), u.to_string(), "success".to_owned()))
            .collect(),
    }
}

fn labels(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_regex_flag_decides_which_agent_gets_the_job() {
    let (_url, mut c) = migrated();
    let run_id = kici_orchestrator::crypto::random_uuid();
    let wants = |source: &str, flags: &str| Requirements {
        patterns: vec![Pattern {
            source: source.into(),
            flags: flags.into(),
        }],
        ..Requirements::default()
    };
    let any_case = job(&run_id, "any-case", wants("^LINUX$", "i"));
    let exact_case = job(&run_id, "exact-case", wants("^LINUX$", ""));
    create_run(
        &mut c,
        &run(
            &run_id,
            vec![any_case.clone(), exact_case.clone()],
            vec![],
            &[],
        ),
    )
    .unwrap();
    let stored = c
        .query_one(
            "SELECT runs_on_patterns FROM dispatch_queue WHERE id = $1::text::uuid",
            &[&any_case.id],
        )
        .unwrap()
        .get::<_, serde_json::Value>(0);
    assert_eq!(stored, json!([{"source": "^LINUX$", "flags": "i"}]));

    let lower = labels(&["linux"]);
    let got = claim(&mut c, "a-lower", None, &lower, &[], 10_000).unwrap();
    let got = got.map(|(j, _)| j).unwrap();
    assert_eq!(got.id, any_case.id, "`i` matches `linux`");
    assert!(!got.org_secrets, "no org-wide secrets in this database");
    let none = claim(&mut c, "a-lower", None, &lower, &[], 10_000).unwrap();
    assert!(
        none.is_none(),
        "without `i`, `^LINUX$` does not match `linux`"
    );
    let upper = labels(&["LINUX"]);
    let got = claim(&mut c, "a-upper", None, &upper, &[], 10_000).unwrap();
    assert_eq!(got.map(|(j, _)| j.id), Some(exact_case.id));
}

#[test]
fn a_failed_job_skips_its_downstream_and_ends_the_run_in_one_change() {
    let (_url, mut c) = migrated();
    let run_id = kici_orchestrator::crypto::random_uuid();
    let build = job(&run_id, "build", Requirements::default());
    let test = job(&run_id, "test", Requirements::default());
    let deploy = job(&run_id, "deploy", Requirements::default());
    create_run(
        &mut c,
        &run(
            &run_id,
            vec![build.clone()],
            vec![test.clone(), deploy.clone()],
            &[("test", "build"), ("deploy", "test")],
        ),
    )
    .unwrap();
    c.execute(
        "UPDATE dispatch_queue SET status = 'failed' WHERE id = $1::text::uuid",
        &[&build.id],
    )
    .unwrap();
    let outcome = job_terminal(&mut c, &build.id, "failed", Some("exit 1"), 0).unwrap();
    let effects: Vec<Effect> = outcome.effects.into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        effects,
        [
            Effect::JobEnded {
                job: "build".into(),
                status: JobStatus::Failed
            },
            Effect::Skip {
                job: "deploy".into()
            },
            Effect::JobEnded {
                job: "deploy".into(),
                status: JobStatus::Skipped
            },
            Effect::Skip { job: "test".into() },
            Effect::JobEnded {
                job: "test".into(),
                status: JobStatus::Skipped
            },
            Effect::RunEnded {
                status: RunStatus::Failed
            },
        ]
    );
    let rows = c
        .query(
            "SELECT j.job_name, j.status, q.status FROM execution_jobs j JOIN dispatch_queue q ON q.id = j.job_id
              WHERE j.run_id = $1::text::uuid ORDER BY j.job_name",
            &[&run_id],
        )
        .unwrap();
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let row = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        got,
        [
            row("build", "failed", "failed"),
            row("deploy", "skipped", "skipped"),
            row("test", "skipped", "skipped"),
        ]
    );
    let run_status: String = c
        .query_one(
            "SELECT status FROM execution_runs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(run_status, "failed");
    // A replay of the end changes nothing.
    let again = job_terminal(&mut c, &build.id, "failed", None, 0).unwrap();
    assert!(again.effects.is_empty());
}

#[test]
fn an_agents_end_repeated_after_its_commit_is_recognised() {
    let (_url, mut c) = migrated();
    let run_id = kici_orchestrator::crypto::random_uuid();
    let only = job(&run_id, "only", Requirements::default());
    create_run(&mut c, &run(&run_id, vec![only.clone()], vec![], &[])).unwrap();
    let claimed = claim(&mut c, "agent-1", None, &[], &[], 10_000).unwrap();
    assert_eq!(claimed.map(|(j, _)| j.id), Some(only.id.clone()));
    let started = job_running(&mut c, &only.id, "agent-1", None).unwrap();
    assert_eq!(
        started.effects.len(),
        2,
        "{started:?}: the job and its run start"
    );
    let by = Reporter {
        agent_id: "agent-1",
        token_id: None,
    };
    let end = || Ending {
        error: None,
        log_bytes: 10,
    };
    let first = agent_terminal(&mut c, &only.id, by, "completed", "success", end())
        .unwrap()
        .expect("held by agent-1");
    assert_eq!(first.run_ended(), Some("success"));
    // The same call again (a retry whose first answer was lost): recognised, nothing written.
    let again = agent_terminal(&mut c, &only.id, by, "completed", "success", end())
        .unwrap()
        .expect("recognised as this agent's own end");
    assert!(again.effects.is_empty());
    // Another agent, or another status, is not.
    let other = Reporter {
        agent_id: "agent-2",
        token_id: None,
    };
    assert!(
        agent_terminal(&mut c, &only.id, other, "completed", "success", end())
            .unwrap()
            .is_none()
    );
    assert!(
        agent_terminal(&mut c, &only.id, by, "failed", "failed", end())
            .unwrap()
            .is_none()
    );
    let bytes: i64 = c
        .query_one(
            "SELECT log_bytes FROM execution_jobs WHERE job_id = $1::text::uuid",
            &[&only.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(bytes, 10, "log bytes counted once");
}

#[test]
fn a_claim_holds_the_job_and_steps_change_as_the_lifecycle_decides() {
    let (_url, mut c) = migrated();
    let run_id = kici_orchestrator::crypto::random_uuid();
    let only = job(&run_id, "only", Requirements::default());
    create_run(&mut c, &run(&run_id, vec![only.clone()], vec![], &[])).unwrap();
    let (claimed, change) = claim(&mut c, "agent-1", None, &[], &[], 10_000)
        .unwrap()
        .expect("claimed");
    assert_eq!(claimed.id, only.id);
    assert_eq!(change.run_id.as_deref(), Some(run_id.as_str()));
    assert_eq!(
        change.effects,
        [(
            Effect::JobClaimed {
                job: "only".into(),
                agent: "agent-1".into()
            },
            Some((only.id.clone(), "only".to_owned()))
        )]
    );
    let job_status: String = c
        .query_one(
            "SELECT status FROM execution_jobs WHERE job_id = $1::text::uuid",
            &[&only.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(job_status, "pending", "a claim changes no job status");
    job_running(&mut c, &only.id, "agent-1", None).unwrap();

    let frame = |state: &str, data: serde_json::Value| {
        json!({"type": "step.status", "jobId": only.id, "stepIndex": 0, "stepName": "build",
               "state": state, "data": data})
    };
    let changed = |c: &mut Client, f: &serde_json::Value| {
        let outcome = step_status(c, &only.id, &run_id, f).unwrap();
        assert!(outcome.effects.len() <= 1, "{outcome:?}");
        outcome.report.filter(|_| !outcome.effects.is_empty())
    };
    let step_row = |c: &mut Client| -> (String, Option<i64>) {
        let r = c
            .query_one(
                "SELECT status, duration_ms FROM execution_steps WHERE job_id = $1::text::uuid AND step_index = 0",
                &[&only.id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let running = frame("running", serde_json::Value::Null);
    assert_eq!(
        changed(&mut c, &running),
        Some(running.clone()),
        "a new step"
    );
    assert_eq!(changed(&mut c, &running), None, "an identical replay");
    let done = frame("success", json!({"durationMs": 104}));
    assert_eq!(changed(&mut c, &done), Some(done.clone()), "the step ends");
    assert_eq!(step_row(&mut c), ("success".to_owned(), Some(104)));
    assert_eq!(changed(&mut c, &done), None, "a replay of the end");
    assert_eq!(changed(&mut c, &running), None, "never back to running");
    let failed = frame("failed", json!({"durationMs": 7}));
    assert_eq!(changed(&mut c, &failed), None, "the first end stays");
    assert_eq!(step_row(&mut c), ("success".to_owned(), Some(104)));
    // A job unknown to the store changes nothing.
    let unknown = kici_orchestrator::crypto::random_uuid();
    let none = step_status(&mut c, &unknown, &run_id, &running).unwrap();
    assert!(none.effects.is_empty());
}

/// A running job whose agent went away waits for its recovery window, not for the stale
/// timeout: only a job still held by a connected agent goes stale.
#[test]
fn a_job_in_recovery_is_not_stale() {
    let (_url, mut c) = migrated();
    let run_id = kici_orchestrator::crypto::random_uuid();
    let only = job(&run_id, "only", Requirements::default());
    create_run(&mut c, &run(&run_id, vec![only.clone()], vec![], &[])).unwrap();
    claim(&mut c, "agent-1", None, &[], &[], 10_000)
        .unwrap()
        .expect("claimed");
    job_running(&mut c, &only.id, "agent-1", None).unwrap();
    c.execute(
        "UPDATE execution_jobs SET last_heartbeat_at = now() - interval '10 minutes'
          WHERE job_id = $1::text::uuid",
        &[&only.id],
    )
    .unwrap();
    let stale = stale_jobs(&mut c, 120).unwrap();
    assert_eq!(
        stale,
        [(only.id.clone(), run_id.clone())],
        "held and silent: stale"
    );
    assert_eq!(start_recovery(&mut c, "agent-1", None, 3600).unwrap(), 1);
    assert!(
        stale_jobs(&mut c, 120).unwrap().is_empty(),
        "recovering: not stale"
    );
}
