//! Agents that attack the orchestrator, with a real daemon and scripted agents over real
//! sockets: an impostor registering the id of an away agent (before and after an orchestrator
//! restart), job frames about another agent's job, upload URLs for other jobs' cache keys, and a
//! terminal status whose database write fails; plus the cases where no token binds an id.
//! Revoked tokens and ping floods: tests/agents_revoked.rs.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    agent::{
        agent_token, one, queue_job, running, setup, token_id, wait_value, Setup, TestAgent, LABELS,
    },
    daemon::*,
    pg::PgCluster,
};

const T: Duration = Duration::from_secs(10);

/// `agentId` of an away agent, registered with another token: refused with 4010.
fn impostor_refused(s: &Setup, token: &str, id: &str, job: &Value) {
    let mut imp = TestAgent::connect(s.d.addr, id);
    assert_eq!(imp.auth(token)["type"], "auth.success");
    let ack = imp.register(
        &LABELS[..4],
        &[(
            job["jobId"].as_str().unwrap(),
            job["runId"].as_str().unwrap(),
        )],
    );
    assert!(ack.is_none(), "the impostor got a register.ack: {ack:?}");
    let failure = imp.recv_type("auth.failure", T).expect("auth.failure");
    assert!(
        failure["reason"]
            .as_str()
            .unwrap()
            .contains("another agent token"),
        "{failure}"
    );
    assert_eq!(
        imp.wait_closed(T),
        Some(4010),
        "a code the agent does not retry"
    );
}

#[test]
fn an_impostor_cannot_take_an_away_agents_id_before_or_after_a_restart() {
    let pg = PgCluster::shared();
    let mut s = setup(pg, &[]);
    let real = agent_token(&s, json!({}));
    let scoped = agent_token(
        &s,
        json!({"labels": ["linux", "kici:role:builder", "kici:role:init-runner"]}),
    );
    let other = agent_token(&s, json!({}));
    let (run, job_id) = queue_job(&s.db, "victim", "h", "l");
    let (a, job) = running(&s, "agent-v", &real);
    let q = |sql: &str| format!("{sql} WHERE id = '{job_id}'");
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_jobs WHERE job_id = '{job_id}'"),
        "running",
    );
    a.vanish();
    wait_value(
        pg,
        &s.db,
        &q("SELECT status FROM dispatch_queue"),
        "recovering",
    );

    impostor_refused(&s, &scoped, "agent-v", &job);
    impostor_refused(&s, &other, "agent-v", &job);
    let logs = s.d.stderr();
    let line = logs
        .lines()
        .find(|l| l.contains("agent id agent-v refused for token"))
        .expect("the refusal is logged");
    assert!(
        line.contains(&scoped[..12]) && line.contains(&real[..12]),
        "both token prefixes: {line}"
    );
    for t in [&real, &scoped, &other] {
        assert!(!logs.contains(t.as_str()), "a token was logged");
    }
    assert_eq!(
        one(
            pg,
            &s.db,
            &q("SELECT status || ':' || agent_token_id FROM dispatch_queue")
        ),
        format!("recovering:{}", token_id(&s, &real))
    );

    // After a restart the binding holds: it is on the queue row.
    let port = s.d.addr.port();
    assert_eq!(s.d.terminate(), Some(0));
    let mut env = base_env(&s.db);
    env.retain(|(k, _)| k != "KICI_PORT");
    env.push(("KICI_PORT".into(), port.to_string()));
    env.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    env.push(("KICI_STORAGE_FS_PATH".into(), s.logs.display().to_string()));
    s.d = Daemon::start(&env);
    s.d.wait_ready_status(200, T);
    impostor_refused(&s, &other, "agent-v", &job);
    assert_eq!(
        one(pg, &s.db, &q("SELECT status FROM dispatch_queue")),
        "recovering"
    );

    let mut back = TestAgent::connect(s.d.addr, "agent-v");
    assert_eq!(back.auth(&real)["type"], "auth.success");
    assert!(back
        .register(&LABELS, &[(job_id.as_str(), run.as_str())])
        .is_some());
    wait_value(
        pg,
        &s.db,
        &q("SELECT status FROM dispatch_queue"),
        "dispatched",
    );
    back.status(&job, "success", json!({"durationMs": 1, "stepResults": []}));
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
}

#[test]
fn frames_about_a_job_another_agent_holds_store_nothing() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let scoped = agent_token(
        &s,
        json!({"labels": ["linux", "kici:role:builder", "kici:role:init-runner"]}),
    );
    let (run, job_id) = queue_job(&s.db, "held", "h", "l");
    let (mut owner, job) = running(&s, "owner", &token);
    let mut other = TestAgent::online(s.d.addr, "meddler", &scoped);
    other.ack(&job);
    other.step(&job, 0, "evil", "success", json!({"durationMs": 1}));
    other.log(&job, 0, &["injected"]);
    other.send(json!({"type": "job.heartbeat", "runId": run, "jobId": job_id, "timestamp": 1}));
    other.status(&job, "failed", json!({"error": "forged"}));
    other.send(
        json!({"type": "cache.upload.request", "messageId": "u1", "jobId": job_id,
                      "cacheType": "source", "contentHash": "h"}),
    );
    let up = other
        .recv_type("cache.upload.response", T)
        .expect("an answer");
    assert_eq!(up["uploadUrl"], "", "no URL for another agent's job");
    // The meddler's session handled its frames in order: all of them before that answer. (OIDC
    // mints for another token's job: src/agent/hub_tests.rs.) The owner's frames still count.
    owner.log(&job, 0, &["mine"]);
    owner.step(&job, 0, "real", "success", json!({"durationMs": 1}));
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT string_agg(step_name, ',') FROM execution_steps WHERE job_id = '{job_id}'"
        ),
        "real",
    );
    assert_eq!(
        one(pg, &s.db, &format!("SELECT status || ':' || coalesce(error_message, '') FROM execution_jobs WHERE job_id = '{job_id}'")),
        "running:"
    );
    assert_eq!(
        one(
            pg,
            &s.db,
            &format!("SELECT status || ':' || agent_id FROM dispatch_queue WHERE id = '{job_id}'")
        ),
        "dispatched:owner"
    );
    owner.status(&job, "success", json!({"durationMs": 1, "stepResults": []}));
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    let log = s
        .logs
        .join(format!("kici-logs/executions/{run}/job-held/step-0.log"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("mine") && !text.contains("injected"),
        "{text}"
    );
}

#[test]
fn upload_urls_only_for_the_jobs_own_cache_keys() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let (run, job_id) = queue_job(&s.db, "builder", "c0ffee", "l0ck");
    let (mut a, _) = running(&s, "agent-c", &token);
    let base = format!("http://127.0.0.1:{}/api/v1/cache/blob/", s.d.addr.port());
    let request = |a: &mut TestAgent, frame: Value, reply: &str| -> (Value, Option<Value>) {
        a.send(frame);
        let answer = a
            .recv_type(reply, T)
            .unwrap_or_else(|| panic!("no {reply}"));
        let error = a.recv_type("error", Duration::from_millis(300));
        (answer, error)
    };
    let upload = |id: &str, extra: Value| {
        let mut f = json!({"type": "cache.upload.request", "messageId": id, "jobId": job_id});
        for (k, v) in extra.as_object().unwrap() {
            f[k] = v.clone();
        }
        f
    };

    let (own, err) = request(
        &mut a,
        upload(
            "s1",
            json!({"cacheType": "source", "contentHash": "c0ffee"}),
        ),
        "cache.upload.response",
    );
    assert!(
        own["uploadUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}source/c0ffee.tar.gz?sig=")),
        "{own}"
    );
    assert!(err.is_none(), "{err:?}");
    let (deps, _) = request(
        &mut a,
        upload(
            "d1",
            json!({"cacheType": "deps", "lockfileHash": "l0ck", "platform": "linux", "arch": "x64"}),
        ),
        "cache.upload.response",
    );
    assert!(
        deps["uploadUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}deps/linux-x64/l0ck.tar.gz?sig=")),
        "{deps}"
    );

    for (id, extra, key) in [
        (
            "s2",
            json!({"cacheType": "source", "contentHash": "victim"}),
            "source/victim.tar.gz",
        ),
        (
            "d2",
            json!({"cacheType": "deps", "lockfileHash": "victim", "platform": "linux", "arch": "x64"}),
            "deps/linux-x64/victim.tar.gz",
        ),
        (
            "d3",
            json!({"cacheType": "deps", "lockfileHash": "l0ck", "platform": "darwin", "arch": "arm64"}),
            "deps/darwin-arm64/l0ck.tar.gz",
        ),
    ] {
        let (answer, err) = request(&mut a, upload(id, extra), "cache.upload.response");
        assert_eq!(
            (answer["requestId"].as_str(), answer["uploadUrl"].as_str()),
            (Some(id), Some("")),
            "{answer}"
        );
        let err = err.unwrap_or_else(|| panic!("no error frame for {key}"));
        assert_eq!(
            (err["code"].as_str(), err["requestId"].as_str()),
            (Some("CACHE_KEY_REFUSED"), Some(id))
        );
        assert!(err["message"].as_str().unwrap().contains(key), "{err}");
    }
    // A completion for a foreign key writes nothing (not even the deps hash companion).
    a.send(json!({"type": "cache.upload.complete", "messageId": "c1", "jobId": job_id, "cacheType": "deps",
                  "lockfileHash": "victim", "platform": "linux", "arch": "x64", "depsHash": "bad"}));
    a.send(json!({"type": "cache.upload.complete", "messageId": "c2", "jobId": job_id, "cacheType": "deps",
                  "lockfileHash": "l0ck", "platform": "linux", "arch": "x64", "depsHash": "good"}));
    let own_hash = s.logs.join("deps/linux-x64/l0ck.hash");
    let deadline = Instant::now() + T;
    while !own_hash.is_file() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&own_hash).unwrap(), "good");
    assert!(!s.logs.join("deps/linux-x64/victim.hash").exists());

    let (prov, _) = request(
        &mut a,
        json!({"type": "provenance.upload.request", "messageId": "p1", "jobId": job_id, "subjectDigest": "sha256:ab"}),
        "provenance.upload.response",
    );
    assert!(
        prov["uploadUrl"].as_str().unwrap().starts_with(&format!(
            "{base}provenance/{run}/{job_id}/sha256%3Aab.kici.json?sig="
        )),
        "{prov}"
    );
    let (bad, err) = request(
        &mut a,
        json!({"type": "provenance.upload.request", "messageId": "p2", "jobId": job_id, "subjectDigest": "../../source/c0ffee"}),
        "provenance.upload.response",
    );
    assert_eq!(bad["uploadUrl"], "");
    assert_eq!(err.unwrap()["code"], "CACHE_KEY_REFUSED");
}

#[test]
fn a_terminal_status_is_retried_until_committed_and_a_resend_is_recorded() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    // Fails the terminal update of listed jobs as many times as listed (a sequence counts across
    // rolled-back transactions).
    pg.psql(
        &s.db,
        "CREATE TABLE test_fail (job_id uuid PRIMARY KEY, failures integer NOT NULL);
         CREATE SEQUENCE test_fail_seq;
         CREATE FUNCTION test_fail() RETURNS trigger AS $$
         DECLARE budget integer;
         BEGIN
             SELECT failures INTO budget FROM test_fail WHERE job_id = NEW.job_id;
             IF budget IS NOT NULL THEN
                 IF nextval('test_fail_seq') <= budget THEN
                     RAISE EXCEPTION 'injected failure for job %', NEW.job_id;
                 END IF;
             END IF;
             RETURN NEW;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER test_fail BEFORE UPDATE OF status ON execution_jobs FOR EACH ROW
             WHEN (NEW.status IN ('success', 'failed', 'cancelled')) EXECUTE FUNCTION test_fail();",
    );
    let token = agent_token(&s, json!({}));
    let (run1, job1) = queue_job(&s.db, "flaky-db", "h", "l");
    pg.psql(
        &s.db,
        &format!("INSERT INTO test_fail VALUES ('{job1}', 2)"),
    );
    let (mut a, job) = running(&s, "agent-t", &token);
    a.status(&job, "success", json!({"durationMs": 1, "stepResults": []}));
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run1}'"),
        "success",
    );
    assert!(s.d.stderr().contains(&format!(
        "recording the end of job {job1} (success) failed, try 2"
    )));

    let (run2, job2) = queue_job(&s.db, "down-db", "h", "l");
    pg.psql(
        &s.db,
        &format!(
            "ALTER SEQUENCE test_fail_seq RESTART; INSERT INTO test_fail VALUES ('{job2}', 1000)"
        ),
    );
    let job = a.dispatch(T).expect("the next job");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    a.status(&job, "failed", json!({"error": "boom"}));
    let deadline = Instant::now() + T;
    while !s
        .d
        .stderr()
        .contains(&format!("the end of job {job2} (failed) is not recorded"))
    {
        assert!(Instant::now() < deadline, "{}", s.d.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        one(
            pg,
            &s.db,
            &format!("SELECT status FROM execution_jobs WHERE job_id = '{job2}'")
        ),
        "running"
    );
    assert_eq!(
        one(
            pg,
            &s.db,
            &format!("SELECT status FROM dispatch_queue WHERE id = '{job2}'")
        ),
        "dispatched",
        "nothing half-written"
    );
    pg.psql(
        &s.db,
        &format!("UPDATE test_fail SET failures = 0 WHERE job_id = '{job2}'"),
    );
    a.status(&job, "failed", json!({"error": "boom"}));
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT status || ':' || error_message FROM execution_jobs WHERE job_id = '{job2}'"
        ),
        "failed:boom",
    );
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run2}'"),
        "failed",
    );
}

#[test]
fn without_agent_auth_ids_work_as_before() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[("KICI_AGENT_AUTH", "none")]);
    let (run, job_id) = queue_job(&s.db, "open", "h", "l");
    let mut a = TestAgent::connect(s.d.addr, "agent-n");
    assert!(a.register(&LABELS, &[]).is_some(), "no auth.request needed");
    let job = a.dispatch(T).expect("dispatched");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    a.vanish();
    let q = format!("SELECT status || ':' || coalesce(agent_token_id::text, '-') FROM dispatch_queue WHERE id = '{job_id}'");
    wait_value(pg, &s.db, &q, "recovering:-");
    let mut back = TestAgent::connect(s.d.addr, "agent-n");
    assert!(back
        .register(&LABELS, &[(job_id.as_str(), run.as_str())])
        .is_some());
    wait_value(pg, &s.db, &q, "dispatched:-");
    back.status(&job, "success", json!({"durationMs": 1, "stepResults": []}));
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
}

#[test]
fn a_job_recorded_without_a_token_is_taken_back_by_its_agent_and_then_bound() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let (real, other) = (agent_token(&s, json!({})), agent_token(&s, json!({})));
    let (run, job_id) = queue_job(&s.db, "legacy", "h", "l");
    let (a, job) = running(&s, "agent-l", &real);
    a.vanish();
    let q = format!("SELECT status || ':' || coalesce(agent_token_id::text, '-') FROM dispatch_queue WHERE id = '{job_id}'");
    wait_value(
        pg,
        &s.db,
        &q,
        &format!("recovering:{}", token_id(&s, &real)),
    );
    // As dispatched by a version that did not record the token (before migration 0005).
    pg.psql(
        &s.db,
        &format!("UPDATE dispatch_queue SET agent_token_id = NULL WHERE id = '{job_id}'"),
    );
    let mut back = TestAgent::connect(s.d.addr, "agent-l");
    assert_eq!(back.auth(&real)["type"], "auth.success");
    assert!(
        back.register(&LABELS, &[(job_id.as_str(), run.as_str())])
            .is_some(),
        "not locked out by a job recorded without a token"
    );
    wait_value(
        pg,
        &s.db,
        &q,
        &format!("dispatched:{}", token_id(&s, &real)),
    );
    back.vanish();
    wait_value(
        pg,
        &s.db,
        &q,
        &format!("recovering:{}", token_id(&s, &real)),
    );
    impostor_refused(&s, &other, "agent-l", &job);
}
