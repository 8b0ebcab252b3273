//! GitHub check runs against a real daemon, PostgreSQL and the fake GitHub's Checks API
//! (docs/check-runs.md): a signed push creates `kici/<workflow>` and one check run per job
//! (matrix children apart), each `queued`, then `in_progress`, then `completed` with the right
//! conclusion (a failed job's summary names its step and exit code 3; a `needs`-skipped job is
//! `skipped`; a cancelled run is `cancelled`); 500s and a secondary rate limit delay the reports
//! but every final state arrives, in order; a restart mid-run loses nothing; a missing
//! `checks: write` gives one warning and no retry loop.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    agent::{agent_token, one, wait_value, Setup, TestAgent, OWNER},
    daemon::*,
    fake_checks::{FakeCheckRun, Scripted},
    fake_github::{rsa_key_pair, FakeGitHub},
    pg::PgCluster,
    webhook::*,
};

const T: Duration = Duration::from_secs(15);
const SECRET: &str = "checks webhook secret";
const REPO: &str = "acme/app";

fn lock() -> Vec<u8> {
    let job = |name: &str, extra: Value| {
        let mut j = json!({"_type": "static", "name": name, "runsOn": [{"kind": "exact", "value": "linux"}],
                           "needs": [], "steps": [{"name": "make", "hasOutputs": false}]});
        for (k, v) in extra.as_object().unwrap() {
            j[k] = v.clone();
        }
        j
    };
    json!({
        "schemaVersion": 29,
        "source": {"file": ".kici/workflows/ci.ts", "export": "#default"},
        "workflows": [
            {"name": "ci", "contentHash": "ci-hash",
             "triggers": [{"_type": "push", "branches": [{"type": "glob", "pattern": "main"}], "paths": []}],
             "jobs": [
                job("pass", json!({})),
                job("fail", json!({})),
                job("matrix", json!({"matrix": {"_type": "static", "values": {"node": ["20", "22"]}}})),
                job("after", json!({"needs": ["fail"]})),
             ]},
        ],
    })
    .to_string()
    .into_bytes()
}

struct World {
    s: Setup,
    gh: FakeGitHub,
    env: Vec<(String, String)>,
}

fn world() -> World {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(8888, "Checks App", "checks-app", public_der);
    let pg = PgCluster::shared();
    let extra = [
        ("KICI_GITHUB_API_URL", gh.url.as_str()),
        ("KICI_RUN_URL_TEMPLATE", "https://ci.example/runs/{runId}"),
        ("KICI_CHECKS_UPDATE_INTERVAL_MS", "300"),
        ("KICI_CHECKS_MAX_BACKOFF_MS", "300"),
    ];
    let s = support::agent::setup(pg, &extra);
    github_source(&s.d, OWNER, "checks", "8888", &key_pem, SECRET);
    let mut env = base_env(&s.db);
    env.retain(|(k, _)| k != "KICI_PORT");
    env.push(("KICI_PORT".into(), s.d.addr.port().to_string()));
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    env.push(("KICI_STORAGE_FS_PATH".into(), s.logs.display().to_string()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    World { s, gh, env }
}

/// A signed push of `sha` to main; returns the run id once it is planned.
fn push(w: &World, delivery: &str, sha: &str) -> String {
    w.gh.put_file(REPO, sha, ".kici/kici.lock.json", &lock());
    let before = "0000000000000000000000000000000000000001";
    w.gh.set_compare(REPO, before, sha, &["src/main.rs"]);
    let body = github_push_body(REPO, "main", before, sha);
    let (r, _) = post_github_push(&w.s.d, SECRET, "8888", delivery, &body, &[]);
    assert_eq!(r.status, 202);
    let pg = PgCluster::shared();
    let sql = format!("SELECT count(*) FROM execution_runs WHERE delivery_id = '{delivery}'");
    wait_value(pg, &w.s.db, &sql, "1");
    one(
        pg,
        &w.s.db,
        &format!("SELECT run_id FROM execution_runs WHERE delivery_id = '{delivery}'"),
    )
}

/// The fake's check runs of `sha` once `done` holds for them.
fn wait_checks(
    w: &World,
    sha: &str,
    what: &str,
    done: impl Fn(&[FakeCheckRun]) -> bool,
) -> Vec<FakeCheckRun> {
    let deadline = Instant::now() + T;
    loop {
        let runs: Vec<FakeCheckRun> =
            w.gh.checks()
                .runs(REPO)
                .into_iter()
                .filter(|r| r.head_sha == sha)
                .collect();
        if done(&runs) {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: check runs {runs:#?}\ndaemon log:\n{}",
            w.s.d.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn named<'a>(runs: &'a [FakeCheckRun], name: &str) -> Option<&'a FakeCheckRun> {
    runs.iter().find(|r| r.name == name)
}

fn status_of(runs: &[FakeCheckRun], name: &str) -> Option<(String, Option<String>)> {
    named(runs, name).map(|r| (r.status.clone(), r.conclusion.clone()))
}

fn completed(c: &str) -> Option<(String, Option<String>)> {
    Some(("completed".into(), Some(c.into())))
}

/// Runs one dispatched job: ack, running, (wait for `between`), step `make` and the end.
fn run_job(a: &mut TestAgent, job: &Value, ok: bool, between: impl FnOnce()) {
    a.ack(job);
    a.status(job, "running", Value::Null);
    between();
    a.step(job, 0, "make", "running", Value::Null);
    a.log(job, 0, &["cc -c main.c", "main.c:1: error: oops"]);
    if ok {
        a.step(job, 0, "make", "success", json!({"durationMs": 5}));
        a.status(
            job,
            "success",
            json!({"durationMs": 9, "stepResults": [{"name": "make", "status": "success"}]}),
        );
    } else {
        let error = json!({"message": "make failed\n    exit code: 3", "exitCode": 3});
        a.step(
            job,
            0,
            "make",
            "failed",
            json!({"durationMs": 5, "error": error}),
        );
        a.status(job, "failed", json!({"durationMs": 9, "stepResults": [{"name": "make", "status": "failed", "error": "exit code: 3"}]}));
    }
}

fn job_name(job: &Value) -> String {
    job["jobConfig"]["name"].as_str().unwrap().to_owned()
}

/// Every state a check run went through never goes back (queued → in_progress → completed).
fn assert_in_order(runs: &[FakeCheckRun]) {
    let rank = |s: &str| {
        ["queued", "in_progress", "completed"]
            .iter()
            .position(|x| *x == s)
    };
    for r in runs {
        let ranks: Vec<_> = r.history.iter().map(|(s, _)| rank(s)).collect();
        assert!(
            ranks.windows(2).all(|w| w[0] <= w[1]),
            "{}: {:?}",
            r.name,
            r.history
        );
    }
}

#[test]
fn a_push_is_reported_from_queued_to_each_jobs_conclusion() {
    let w = world();
    let sha = "3333333333333333333333333333333333333333";
    let run = push(&w, "chk-1", sha);
    // Queued at planning time: the run and its four runnable jobs plus the waiting `after`.
    let names = [
        "kici/ci",
        "kici/ci/job/pass",
        "kici/ci/job/fail",
        "kici/ci/job/matrix (20)",
        "kici/ci/job/matrix (22)",
        "kici/ci/job/after",
    ];
    let runs = wait_checks(&w, sha, "all queued", |r| {
        names.iter().all(|n| named(r, n).is_some())
    });
    assert_eq!(runs.len(), names.len(), "{runs:#?}");
    for r in &runs {
        assert_eq!(r.history[0].0, "queued", "{}", r.name);
        assert_eq!(r.external_id.as_deref(), Some(run.as_str()), "{}", r.name);
        assert_eq!(
            r.details_url.as_deref(),
            Some(format!("https://ci.example/runs/{run}").as_str())
        );
    }
    assert_eq!(named(&runs, "kici/ci").unwrap().title, "KiCI: ci");
    assert_eq!(
        named(&runs, "kici/ci/job/pass").unwrap().title,
        "KiCI: ci/pass"
    );

    let token = agent_token(&w.s, json!({}));
    let mut a = TestAgent::online(w.s.d.addr, "checks-agent", &token);
    for _ in 0..4 {
        let job = a.dispatch(T).expect("a job");
        let name = job_name(&job);
        let check = format!("kici/ci/job/{name}");
        run_job(&mut a, &job, name != "fail", || {
            wait_checks(&w, sha, "in progress", |r| {
                status_of(r, &check).is_some_and(|(s, _)| s == "in_progress")
            });
        });
    }
    let runs = wait_checks(&w, sha, "all completed", |r| {
        status_of(r, "kici/ci") == completed("failure")
    });
    assert_eq!(status_of(&runs, "kici/ci/job/pass"), completed("success"));
    assert_eq!(status_of(&runs, "kici/ci/job/fail"), completed("failure"));
    assert_eq!(
        status_of(&runs, "kici/ci/job/matrix (20)"),
        completed("success")
    );
    assert_eq!(
        status_of(&runs, "kici/ci/job/matrix (22)"),
        completed("success")
    );
    assert_eq!(status_of(&runs, "kici/ci/job/after"), completed("skipped"));
    for n in ["kici/ci/job/pass", "kici/ci/job/fail"] {
        let states: Vec<&str> = named(&runs, n)
            .unwrap()
            .history
            .iter()
            .map(|(s, _)| s.as_str())
            .collect();
        assert!(
            states.starts_with(&["queued", "in_progress"]) && states.last() == Some(&"completed"),
            "{n}: {states:?}"
        );
    }
    assert_in_order(&runs);
    let fail = named(&runs, "kici/ci/job/fail").unwrap();
    assert!(
        fail.summary
            .starts_with("Step `make` failed with exit code 3: make failed"),
        "{}",
        fail.summary
    );
    assert!(
        fail.summary.contains("main.c:1: error: oops"),
        "{}",
        fail.summary
    );
    let whole = named(&runs, "kici/ci").unwrap();
    assert!(whole.summary.contains("Failed: fail."), "{}", whole.summary);
    // The list for the commit, as GitHub serves it, holds the same.
    assert_eq!(
        runs.len(),
        names.len(),
        "no check run created twice: {runs:#?}"
    );

    // A cancelled run: nobody takes its jobs; cancelling ends them.
    drop(a);
    let deadline = Instant::now() + T;
    while !w.s.d.stderr().contains("agent checks-agent disconnected") {
        assert!(Instant::now() < deadline, "the agent never left");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sha2 = "4444444444444444444444444444444444444444";
    let run2 = push(&w, "chk-2", sha2);
    wait_checks(&w, sha2, "queued", |r| r.len() == names.len());
    let r = admin(
        &w.s.d,
        OWNER,
        "POST",
        &format!("/runs/{run2}/cancel"),
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let runs = wait_checks(&w, sha2, "cancelled", |r| {
        status_of(r, "kici/ci") == completed("cancelled")
    });
    for n in &names[1..5] {
        assert_eq!(status_of(&runs, n), completed("cancelled"), "{n}");
    }
    assert_in_order(&runs);
}

#[test]
fn outages_rate_limits_and_a_restart_delay_reports_but_lose_none() {
    let mut w = world();
    let pg = PgCluster::shared();
    // Three 500s, then a secondary rate limit twice (Retry-After: 1 s; GitHub asks for a minute
    // or more, the test keeps it short).
    let mut answers = vec![Scripted::server_error(); 3];
    answers.extend([Scripted::secondary_limit(1), Scripted::secondary_limit(1)]);
    w.gh.checks().script(answers);
    let sha = "5555555555555555555555555555555555555555";
    let run = push(&w, "chk-3", sha);
    let token = agent_token(&w.s, json!({}));
    let mut a = TestAgent::online(w.s.d.addr, "checks-agent-2", &token);
    // Two jobs end while GitHub misbehaves.
    for _ in 0..2 {
        let job = a.dispatch(T).expect("a job");
        let ok = job_name(&job) != "fail";
        run_job(&mut a, &job, ok, || {});
    }
    let runs = wait_checks(&w, sha, "after recovery", |r| {
        r.iter().filter(|c| c.status == "completed").count() >= 2
    });
    assert_in_order(&runs);
    assert_eq!(w.gh.checks().scripted_left(), 0);
    // Every rate-limited answer was followed by a pause of at least its Retry-After.
    let answered = w.gh.checks().answered();
    let statuses: Vec<u16> = answered.iter().map(|(_, s)| *s).take(5).collect();
    assert_eq!(statuses, [500, 500, 500, 403, 403]);
    for pair in answered.windows(2).filter(|p| p[0].1 == 403) {
        let gap = pair[1].0.duration_since(pair[0].0);
        assert!(
            gap >= Duration::from_millis(950),
            "called again after {gap:?}"
        );
    }

    // GitHub goes down for good; the remaining jobs end; the daemon restarts; GitHub is back.
    w.gh.checks()
        .outage(Duration::from_secs(3600), Scripted::server_error());
    for _ in 0..2 {
        let job = a.dispatch(T).expect("a job");
        let ok = job_name(&job) != "fail";
        run_job(&mut a, &job, ok, || {});
    }
    wait_value(
        pg,
        &w.s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "failed",
    );
    assert_eq!(w.s.d.terminate(), Some(0));
    drop(a);
    w.gh.checks()
        .outage(Duration::ZERO, Scripted::server_error());
    w.s.d = Daemon::start(&w.env);
    let runs = wait_checks(&w, sha, "after the restart", |r| {
        status_of(r, "kici/ci") == completed("failure")
    });
    assert_eq!(runs.len(), 6, "no check run created twice: {runs:#?}");
    assert_eq!(status_of(&runs, "kici/ci/job/fail"), completed("failure"));
    assert_eq!(status_of(&runs, "kici/ci/job/pass"), completed("success"));
    assert_eq!(status_of(&runs, "kici/ci/job/after"), completed("skipped"));
    assert_in_order(&runs);
    assert_eq!(
        one(
            pg,
            &w.s.db,
            &format!("SELECT count(*) FROM check_report_settled WHERE run_id = '{run}'")
        ),
        "1"
    );
}

#[test]
fn a_missing_checks_permission_warns_once_and_does_not_loop() {
    let w = world();
    w.gh.checks().deny(true);
    let sha = "6666666666666666666666666666666666666666";
    let run1 = push(&w, "chk-4", sha);
    let token = agent_token(&w.s, json!({}));
    let mut a = TestAgent::online(w.s.d.addr, "checks-agent-3", &token);
    let job = a.dispatch(T).expect("a job");
    run_job(&mut a, &job, true, || {});
    let run2 = push(&w, "chk-5", "7777777777777777777777777777777777777777");
    std::thread::sleep(Duration::from_secs(3));
    let requests = w.gh.checks().requests();
    assert!(requests <= 2, "{requests} Checks API calls: a retry loop");
    let log = w.s.d.stderr();
    assert_eq!(log.matches("checks: write").count(), 1, "{log}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.gh.checks().requests(), requests, "still calling GitHub");
    assert!(w.gh.checks().runs(REPO).is_empty());

    // Both runs wait unsettled; the reporter's sweep walks them page by page.
    let mut client = postgres::Client::connect(&w.s.db, postgres::NoTls).unwrap();
    use kici_orchestrator::checks::store::unsettled;
    let first = unsettled(&mut client, None, 1).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, run1);
    let second = unsettled(&mut client, Some(&first[0].1), 1).unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0, run2);
    assert!(unsettled(&mut client, Some(&second[0].1), 1)
        .unwrap()
        .is_empty());
    assert_eq!(unsettled(&mut client, None, 10).unwrap().len(), 2);

    // The organisation grants `checks: write`: GitHub sends `installation` with action
    // `new_permissions_accepted`, and the parked reports go out now, not after the 30 minutes
    // the source stays parked otherwise.
    w.gh.checks().deny(false);
    let body = json!({"action": "new_permissions_accepted", "installation": {"id": 42},
                      "sender": {"login": "octo-admin"}})
    .to_string();
    let (r, _) = post_github_event(
        &w.s.d,
        SECRET,
        "8888",
        "installation",
        "chk-perm",
        &body,
        &[],
    );
    assert_eq!(r.status, 202);
    // Run 1: the job that ran is reported completed, the run itself still in progress.
    wait_checks(&w, sha, "run 1 reported after the grant", |runs| {
        runs.iter().any(|c| c.name == "kici/ci")
            && runs
                .iter()
                .any(|c| c.name.starts_with("kici/ci/job/") && c.status == "completed")
    });
    wait_checks(
        &w,
        "7777777777777777777777777777777777777777",
        "run 2 reported",
        |runs| !runs.is_empty(),
    );
    let log = w.s.d.stderr();
    assert!(log.contains("accepted new permissions"), "{log}");
    let shown = cli(
        &[
            "--url",
            &format!("http://{}", w.s.d.addr),
            "--token",
            OWNER,
            "event-log",
            "show",
            "chk-perm",
        ],
        &[],
    );
    assert!(
        stdout(&shown).contains("accepted the App's new permissions"),
        "{}",
        stdout(&shown)
    );
}

/// A run of a local source reports nowhere, and `runs show` renders the same conclusion and
/// summary a GitHub check run would show.
#[test]
fn runs_show_gives_every_source_the_same_conclusion_and_summary() {
    let pg = PgCluster::shared();
    let s = support::agent::setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "local-agent", &token);
    let (run, jobs) = support::agent::queue_run(&s.db, &["build"], &[]);
    let job = a.dispatch(T).expect("dispatched");
    run_job(&mut a, &job, false, || {});
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "failed",
    );
    let v = admin(&s.d, OWNER, "GET", &format!("/runs/{run}"), json!({})).json();
    assert_eq!(v["run"]["check"]["conclusion"], "failure", "{v}");
    assert_eq!(v["run"]["check"]["name"], "kici/basic");
    let check = &v["jobs"][0]["check"];
    assert_eq!(v["jobs"][0]["jobId"], jobs[0].as_str());
    assert_eq!(check["conclusion"], "failure", "{v}");
    let summary = check["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("Step `make` failed with exit code 3: make failed"),
        "{summary}"
    );
    assert!(summary.contains("main.c:1: error: oops"), "{summary}");
    let url = format!("http://{}", s.d.addr);
    let out = cli(
        &["--url", &url, "--token", OWNER, "runs", "show", &run],
        &[],
    );
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("Conclusion:") && l.ends_with(" failure")),
        "{text}"
    );
    assert_eq!(
        one(pg, &s.db, "SELECT count(*) FROM check_reports"),
        "0",
        "a local source reports nothing"
    );
}
