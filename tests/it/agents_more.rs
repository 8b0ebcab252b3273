//! More of the agent link: the OIDC request, step forwarding and `run.cancel.request` through the
//! Platform double (hybrid mode), agent requests answered from storage or with the documented stub
//! answers, a missed ack handled as a disconnect, a flooding agent slowed down without losing a
//! frame, and 8 agents × 1,000 jobs with every job dispatched exactly once.

use crate::support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use support::{
    agent::{agent_token, one, queue_run, setup, wait_value, TestAgent, LABELS},
    pg::PgCluster,
    platform::PlatformDouble,
};

const T: Duration = Duration::from_secs(10);

#[test]
fn oidc_only_for_owned_jobs_and_cancel_from_the_platform() {
    let platform = PlatformDouble::start(None);
    let pg = PgCluster::shared();
    let url = platform.url();
    let s = setup(
        pg,
        &[
            ("KICI_MODE", "hybrid"),
            ("KICI_PLATFORM_URL", &url),
            ("KICI_PLATFORM_TOKEN", PlatformDouble::TOKEN),
            ("KICI_CLUSTER_INSTANCE_ID", "inst-oidc"),
        ],
    );
    platform.wait_for("source.register", T, |_| true);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-o", &token);
    let (run, jobs) = queue_run(&s.db, &["sign", "other"], &[]);
    let job = a.dispatch(T).unwrap();
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    let ask = |a: &mut TestAgent, id: &str, job_id: &str| {
        a.send(
            json!({"type": "agent.api.request", "requestId": id, "method": "oidc.token.request",
                      "params": {"jobId": job_id, "audience": "sigstore"}}),
        );
        a.recv_type("agent.api.response", T)
            .expect("agent.api.response")
    };
    let refused = ask(&mut a, "q1", &jobs[1]);
    assert_eq!(
        refused["error"],
        format!("job {} not owned by agent agent-o", jobs[1])
    );
    assert!(
        platform.mint_requests().is_empty(),
        "the Platform is not asked for a job the agent does not hold"
    );
    let minted = ask(&mut a, "q2", &jobs[0]);
    assert_eq!(
        minted["result"],
        json!({"token": "eyJhbGciOiJFUzI1NiJ9.test.sig", "expiresIn": 300, "jti": "jti-1"}),
        "{minted}"
    );
    let requests = platform.mint_requests();
    assert_eq!(
        requests[0].0,
        "/internal/orchestrator/inst-oidc/mint-id-token"
    );
    assert_eq!(
        requests[0].1,
        json!({"run_id": run, "job_id": jobs[0], "audience": "sigstore"})
    );
    a.send(json!({"type": "agent.api.request", "requestId": "q3", "method": "inventory.query", "params": {}}));
    assert_eq!(
        a.recv_type("agent.api.response", T).unwrap()["error"],
        "Unknown API method 'inventory.query'"
    );

    // Steps are forwarded once per change: a replay, or a finished step going back, is not.
    a.step(&job, 0, "sign", "running", Value::Null);
    a.step(&job, 0, "sign", "running", Value::Null);
    a.step(&job, 0, "sign", "success", json!({"durationMs": 3}));
    a.step(&job, 0, "sign", "running", Value::Null);
    a.step(&job, 1, "upload", "running", Value::Null);
    platform.wait_for("step.status.forward", T, |f| f["stepIndex"] == 1);
    let steps: Vec<String> = platform
        .frames_of("step.status.forward")
        .iter()
        .map(|f| format!("{}:{}", f["stepIndex"], f["state"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(steps, ["0:running", "0:success", "1:running"]);

    // The Platform cancels the run: the agent is told, the queued job ends.
    platform.send(
        &json!({"type": "run.cancel.request", "requestId": "c1", "runId": run,
                          "actor": {"type": "user", "id": "u"}}),
    );
    let cancel = a.recv_type("job.cancel", T).expect("job.cancel");
    assert_eq!(cancel["jobId"].as_str(), Some(jobs[0].as_str()));
    let answer = platform.wait_for("run.cancel.response", T, |_| true);
    assert_eq!(
        (
            answer["requestId"].as_str(),
            answer["cancelledJobs"].as_i64()
        ),
        (Some("c1"), Some(2))
    );
    a.status(&job, "cancelled", json!({"stepResults": []}));
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "cancelled",
    );
    platform.wait_for("execution.status", T, |f| f["status"] == "cancelled");
    let statuses: Vec<String> = platform
        .frames_of("execution.status")
        .iter()
        .map(|f| f["status"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        statuses.ends_with(&["cancelled".to_owned()]),
        "{statuses:?}"
    );
    assert!(statuses.contains(&"running".to_owned()), "{statuses:?}");
    assert!(!platform.frames_of("job.status.forward").is_empty());
}

#[test]
fn agent_requests_get_storage_urls_or_stub_answers() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-q", &token);
    let (run, _) = queue_run(&s.db, &["cache"], &[]);
    let job = a.dispatch(T).unwrap();
    a.ack(&job);
    let mut ask = |frame: Value, reply: &str| {
        a.send(frame);
        a.recv_type(reply, T)
            .unwrap_or_else(|| panic!("no {reply}"))
    };
    let up = ask(
        json!({"type": "cache.upload.request", "messageId": "u1", "jobId": job["jobId"], "cacheType": "source",
                        "contentHash": "abc", "platform": "linux", "arch": "x64"}),
        "cache.upload.response",
    );
    // Not a build job: no tarball upload (granted URLs: tests/it/agents_hostile.rs).
    assert_eq!(up["uploadUrl"], "", "{up}");
    assert_eq!(up["requestId"], "u1");
    let other = ask(
        json!({"type": "cache.upload.request", "messageId": "u2", "jobId": "not-mine", "cacheType": "source",
                           "contentHash": "abc"}),
        "cache.upload.response",
    );
    assert_eq!(
        other["uploadUrl"], "",
        "no URL for a job the agent does not hold"
    );
    let prov = ask(
        json!({"type": "provenance.upload.request", "messageId": "p1", "jobId": job["jobId"], "subjectDigest": "sha256:1"}),
        "provenance.upload.response",
    );
    assert!(
        prov["uploadUrl"]
            .as_str()
            .unwrap()
            .contains(&format!("provenance/{run}/")),
        "{prov}"
    );
    let restore = ask(
        json!({"type": "cache.user.restore.request", "messageId": "r1", "jobId": job["jobId"], "key": "k"}),
        "cache.user.restore.response",
    );
    assert_eq!(
        (restore["requestId"].as_str(), restore["hit"].as_bool()),
        (Some("r1"), Some(false))
    );
    let save = ask(
        json!({"type": "cache.user.save.request", "messageId": "s1", "jobId": job["jobId"], "key": "k"}),
        "cache.user.save.response",
    );
    assert_eq!(save["skip"], true);
    let conc = ask(
        json!({"type": "job.concurrency.report", "messageId": "c1", "runId": run, "jobId": job["jobId"], "group": "g"}),
        "job.concurrency.ack",
    );
    assert_eq!(
        (conc["requestId"].as_str(), conc["action"].as_str()),
        (Some("c1"), Some("proceed"))
    );
    let emit = ask(
        json!({"type": "event.emit", "requestId": "e1", "jobId": job["jobId"], "eventName": "x", "payload": {}}),
        "event.emit.response",
    );
    assert_eq!(emit["error"], "Event routing not available");
    let approval = ask(
        json!({"type": "step.approval-request", "messageId": "a1", "runId": run, "jobId": job["jobId"],
                              "stepIndex": 2, "stepName": "deploy", "clauses": [], "reason": "prod"}),
        "step.approval-resolved",
    );
    assert_eq!(
        (approval["requestId"].as_str(), approval["outcome"].as_str()),
        (Some("a1"), Some("rejected"))
    );
    // The refused tarball upload above came with its error frame.
    let refused = a.recv_type("error", T).expect("the refusal");
    assert_eq!(refused["code"], "CACHE_KEY_REFUSED", "{refused}");
    // Unknown frames are accepted; a malformed known one closes 4003.
    a.send(json!({"type": "agent.metrics", "messageId": "m", "agentId": "agent-q", "metrics": [], "timestamp": 1}));
    a.send(json!({"type": "job.status", "state": "running"}));
    let error = a.recv_type("error", T).expect("error frame");
    assert_eq!(error["code"], "INVALID_MESSAGE");
    assert_eq!(a.wait_closed(T), Some(4003));
}

#[test]
fn a_flooding_agent_is_slowed_down_but_loses_nothing() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-f", &token);
    let (run, jobs) = queue_run(&s.db, &["noisy"], &[]);
    let job = a.dispatch(T).unwrap();
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    let started = Instant::now();
    for i in 0..600 {
        a.log(&job, 0, &[&format!("line {i}")]);
    }
    a.step(&job, 0, "noisy", "success", json!({"durationMs": 1}));
    a.status(&job, "success", json!({"durationMs": 1, "stepResults": []}));
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT status FROM execution_jobs WHERE job_id = '{}'",
            jobs[0]
        ),
        "success",
    );
    println!(
        "600 log chunks + job end handled in {:?}",
        started.elapsed()
    );
    assert!(
        a.recv_type("rate.limit.warning", Duration::from_secs(2))
            .is_some(),
        "the agent is told to slow down"
    );
    let log = s
        .logs
        .join(format!("kici-logs/executions/{run}/job-noisy/step-0.log"));
    let lines = std::fs::read_to_string(log).unwrap().lines().count();
    assert_eq!(lines, 600, "no log line was dropped");
    assert_eq!(
        one(
            pg,
            &s.db,
            &format!(
                "SELECT status FROM execution_steps WHERE job_id = '{}'",
                jobs[0]
            )
        ),
        "success"
    );
}

#[test]
fn eight_agents_and_a_thousand_jobs_each_dispatched_once() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let names: Vec<String> = (0..1000).map(|i| format!("job-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (run, _) = queue_run(&s.db, &refs, &[]);
    let seen: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let (addr, token, seen) = (s.d.addr, token.clone(), seen.clone());
            thread::spawn(move || {
                let id = format!("worker-{i}");
                let mut a = TestAgent::online(addr, &id, &token);
                let deadline = Instant::now() + Duration::from_secs(120);
                while Instant::now() < deadline {
                    let Some(job) = a.dispatch(Duration::from_secs(3)) else {
                        break;
                    };
                    seen.lock()
                        .unwrap()
                        .entry(job["jobId"].as_str().unwrap().to_owned())
                        .or_default()
                        .push(id.clone());
                    a.ack(&job);
                    a.status(&job, "running", Value::Null);
                    a.status(&job, "success", json!({"durationMs": 1, "stepResults": []}));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    let twice: Vec<_> = seen
        .iter()
        .filter(|(_, agents)| agents.len() > 1)
        .take(5)
        .collect();
    assert!(twice.is_empty(), "dispatched more than once: {twice:?}");
    assert_eq!(seen.len(), 1000, "every job dispatched");
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT count(*) FROM dispatch_queue WHERE run_id = '{run}' AND status = 'completed'"
        ),
        "1000",
    );
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    let per_agent = seen
        .values()
        .fold(HashMap::<&str, usize>::new(), |mut m, a| {
            *m.entry(a[0].as_str()).or_default() += 1;
            m
        });
    println!("jobs per agent: {per_agent:?}");
}

#[test]
fn a_missed_ack_ends_the_session_like_a_disconnect() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[("KICI_DISPATCH_ACK_TIMEOUT_MS", "1000")]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::connect(s.d.addr, "agent-two");
    assert_eq!(a.auth(&token)["type"], "auth.success");
    a.send(
        json!({"type": "agent.register", "messageId": "register-1", "agentId": "agent-two",
                  "labels": LABELS, "platform": "linux", "arch": "x64", "maxConcurrency": 2}),
    );
    a.recv_type("register.ack", T).expect("register.ack");
    let (_run, jobs) = queue_run(&s.db, &["acked", "silent"], &[]);
    let first = a.dispatch(T).expect("first job");
    a.ack(&first);
    a.status(&first, "running", Value::Null);
    let second = a.dispatch(T).expect("second job");
    assert_ne!(first["jobId"], second["jobId"]);
    // The second job is never acknowledged: 4031, and the session ends as any disconnect does.
    assert_eq!(a.wait_closed(T), Some(4031));
    let acked = first["jobId"].as_str().unwrap();
    let silent = second["jobId"].as_str().unwrap();
    assert!(jobs.iter().any(|j| j == acked) && jobs.iter().any(|j| j == silent));
    let row = |id: &str| {
        format!(
            "SELECT status || ':' || dispatch_attempts || ':' || coalesce(agent_id, '-') FROM dispatch_queue WHERE id = '{id}'"
        )
    };
    wait_value(pg, &s.db, &row(silent), "pending:1:-");
    wait_value(pg, &s.db, &row(acked), "recovering:0:agent-two");

    // The agent comes back with its running job: it is its again.
    let mut back = TestAgent::connect(s.d.addr, "agent-two");
    assert_eq!(back.auth(&token)["type"], "auth.success");
    let run_id = first["runId"].as_str().unwrap();
    assert!(back.register(&LABELS, &[(acked, run_id)]).is_some());
    wait_value(pg, &s.db, &row(acked), "dispatched:0:agent-two");
}
