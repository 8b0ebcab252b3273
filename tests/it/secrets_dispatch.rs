//! Secrets at dispatch against a real daemon, PostgreSQL, the fake GitHub and the scripted agent
//! (docs/secrets.md, "Resolution at dispatch"): a job bound to `prod` (bound to scope
//! `aws/prod`) gets exactly that scope's secrets over the org-wide ones, a later environment
//! wins, a glob environment resolves, a job queued before a daemon restart still gets its
//! secrets, a missing environment or an undecryptable secret fails the job with the reason, a
//! fork's pull request gets nothing but what an `allow_untrusted` environment offers (and
//! `runs show` says why), the frame has the shape the agent reads, and no value is anywhere in
//! a `pg_dump` of the database.

use crate::support;

use std::time::Duration;

use kici_orchestrator::{
    crypto::{SecretBox, SecretKey},
    secrets::{
        store::{self, EnvKind, EnvironmentSpec},
        ORG_WIDE_SCOPE,
    },
};
use postgres::{Client, NoTls};
use serde_json::{json, Value};
use support::{
    agent::{agent_token, one, wait_value, Setup, TestAgent, OWNER},
    daemon::*,
    fake_github::{rsa_key_pair, FakeGitHub},
    pg::PgCluster,
    webhook::*,
};

const T: Duration = Duration::from_secs(10);
const HOOK_SECRET: &str = "secrets dispatch hook secret";
const SHA: &str = "5555555555555555555555555555555555555555";
const PR_SHA: &str = "6666666666666666666666666666666666666666";
const ORG: &str = "acme";

/// Every stored value, each unique, so a leak anywhere is found by `pg_dump`.
const ORG_NPM: &str = "org-npm-value-c81f";
const ORG_DB: &str = "org-db-value-2a7e";
const PROD_DB: &str = "prod-db-value-93d0";
const PROD_AWS: &str = "prod-aws-value-4b1c";
const STAGING_AWS: &str = "staging-aws-value-77e2";
const PREVIEW_URL: &str = "preview-url-value-0d5a";
const PUBLIC_KEY: &str = "public-key-value-e3b9";
const OTHER_ORG_NPM: &str = "other-org-npm-value-5f60";
const VAULT: &str = "vault-value-19ac";
const ALL: [&str; 9] = [
    ORG_NPM,
    ORG_DB,
    PROD_DB,
    PROD_AWS,
    STAGING_AWS,
    PREVIEW_URL,
    PUBLIC_KEY,
    OTHER_ORG_NPM,
    VAULT,
];

fn lock() -> Vec<u8> {
    let job = |name: &str, envs: &[&str]| {
        let mut j = support::lock::static_job(name, json!([]));
        if !envs.is_empty() {
            j["environments"] = json!(envs
                .iter()
                .map(|e| json!({"value": e, "dynamic": false}))
                .collect::<Vec<_>>());
        }
        j
    };
    let mut ship = job("ship", &["prod"]);
    ship["env"] = json!({"LOG_LEVEL": "debug"});
    json!({
        "schemaVersion": 29,
        "source": {"file": ".kici/workflows/deploy.ts", "export": "#default"},
        "contentHash": "lock-hash",
        "workflows": [{"name": "deploy", "contentHash": "deploy-hash",
            "triggers": [{"_type": "push", "branches": [{"type": "glob", "pattern": "main"}], "paths": []},
                         {"_type": "pr", "events": ["opened"], "targetBranches": [{"type": "glob", "pattern": "main"}],
                          "sourceBranches": [], "paths": []}],
            "jobs": [ship, job("both", &["prod", "staging"]), job("preview", &["preview-42"]),
                     job("plain", &[]), job("docs", &["open"]), job("broken", &["nope"]),
                     job("sealed", &["vault"])]}],
    })
    .to_string()
    .into_bytes()
}

struct World {
    s: Setup,
    _gh: FakeGitHub,
    env: Vec<(String, String)>,
}

fn world() -> World {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(8282, "Secrets App", "secrets-app", public_der);
    gh.put_file("acme/app", SHA, ".kici/kici.lock.json", &lock());
    gh.put_file("acme/app", PR_SHA, ".kici/kici.lock.json", &lock());
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let (mut env, logs) = support::agent::agent_env(&db, "secrets");
    env.push(("KICI_GITHUB_API_URL".into(), gh.url.clone()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    github_source(&d, OWNER, "secrets", "8282", &key_pem, HOOK_SECRET);
    // The source's customer id is the org whose secrets its jobs get.
    let r = admin(
        &d,
        OWNER,
        "PATCH",
        "/sources/github:8282",
        json!({"customerId": ORG}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    seed(&db);
    World {
        s: Setup { d, db, logs },
        _gh: gh,
        env,
    }
}

/// The org's secrets, environments, bindings and variables, through the store.
fn seed(db: &str) {
    let mut c = Client::connect(db, NoTls).unwrap();
    let sbox = SecretBox::new(SecretKey::parse(TEST_KEY).unwrap(), None);
    for (org, scope, key, value) in [
        (ORG, ORG_WIDE_SCOPE, "NPM_TOKEN", ORG_NPM),
        (ORG, ORG_WIDE_SCOPE, "DB_PASSWORD", ORG_DB),
        (ORG, "aws/prod", "DB_PASSWORD", PROD_DB),
        (ORG, "aws/prod", "AWS_KEY", PROD_AWS),
        (ORG, "aws/staging", "AWS_KEY", STAGING_AWS),
        (ORG, "preview", "PREVIEW_URL", PREVIEW_URL),
        (ORG, "public", "PUBLIC_KEY", PUBLIC_KEY),
        (ORG, "vault", "VAULT_TOKEN", VAULT),
        ("other", ORG_WIDE_SCOPE, "NPM_TOKEN", OTHER_ORG_NPM),
    ] {
        store::put_secret(&mut c, &sbox, org, scope, key, value).unwrap();
    }
    // Sealed with another key: opening it fails.
    let stranger = SecretBox::new(SecretKey::generate(), None);
    let bad = stranger.seal(VAULT.as_bytes(), "acme:vault:VAULT_TOKEN");
    c.execute(
        "UPDATE scoped_secrets SET encrypted_value = $1 WHERE org_id = 'acme' AND scope = 'vault'",
        &[&bad],
    )
    .unwrap();
    for (name, kind, allow, scope) in [
        ("prod", EnvKind::Fixed, false, "aws/prod"),
        ("staging", EnvKind::Fixed, false, "aws/staging"),
        (
            "previews",
            EnvKind::Glob("preview-*".into()),
            false,
            "preview",
        ),
        ("open", EnvKind::Fixed, true, "public"),
        ("vault", EnvKind::Fixed, false, "vault"),
    ] {
        let spec = EnvironmentSpec {
            name: name.into(),
            kind: Some(kind),
            allow_untrusted: Some(allow),
            enabled: Some(true),
        };
        store::upsert_environment(&mut c, ORG, &spec, Some("test")).unwrap();
        assert_eq!(
            store::bind(&mut c, ORG, name, scope, "**").unwrap(),
            Some(true)
        );
    }
    store::set_variable(&mut c, ORG, "prod", "REGION", "eu-west-1", None)
        .unwrap()
        .unwrap();
    store::set_variable(&mut c, ORG, "open", "DOCS_HOST", "docs.example", None)
        .unwrap()
        .unwrap();
}

impl World {
    fn deliver(&self, event: &str, delivery: &str, body: Value) {
        let body = body.to_string();
        let sig = format!("sha256={}", sign(HOOK_SECRET, body.as_bytes()));
        let r = post(
            &self.s.d,
            "/webhook/acme/github",
            &[
                ("X-GitHub-Event", event),
                ("X-GitHub-Delivery", delivery),
                ("X-GitHub-Hook-Installation-Target-ID", "8282"),
                ("X-Hub-Signature-256", &sig),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        wait_value(
            PgCluster::shared(),
            &self.s.db,
            &format!("SELECT status FROM event_log WHERE delivery_id = '{delivery}'"),
            "processed",
        );
    }

    fn q(&self, sql: &str) -> String {
        one(PgCluster::shared(), &self.s.db, sql)
    }

    fn runs_show(&self, args: &[&str]) -> String {
        let url = format!("http://{}", self.s.d.addr);
        let mut all = vec!["--url", url.as_str(), "--token", OWNER, "runs", "show"];
        all.extend_from_slice(args);
        let out = cli(&all, &[]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    /// Every job the agent is sent (each run to the end), by name; jobs failed at dispatch are
    /// never sent.
    fn dispatched(&self, agent: &mut TestAgent, count: usize) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        for _ in 0..count {
            let Some(job) = agent.dispatch(T) else {
                panic!(
                    "no job.dispatch after {} of {count}; queue: {}\ndaemon: {}",
                    got.len(),
                    self.q("SELECT string_agg(job_name || ' ' || status || ' ' || coalesce(last_error, ''), '; ') FROM dispatch_queue"),
                    self.s.d.stderr()
                );
            };
            check_shape(&job);
            let name = job["jobConfig"]["name"].as_str().unwrap().to_owned();
            // The step reads a secret: the agent reports its name.
            agent.ack(&job);
            agent.status(&job, "running", Value::Null);
            let accessed: Vec<&String> = job["secrets"]
                .as_object()
                .map(|m| m.keys().take(1).collect())
                .unwrap_or_default();
            agent.send(
                json!({"type": "step.status", "messageId": kici_orchestrator::crypto::random_uuid(),
                "runId": job["runId"], "jobId": job["jobId"], "timestamp": 1, "stepIndex": 0,
                "stepName": "step-1", "state": "success", "data": {"durationMs": 3},
                "secretsAccessed": accessed}),
            );
            agent.status(&job, "success", json!({"durationMs": 5}));
            got.push((name, job));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        got
    }
}

fn push_body() -> Value {
    json!({
        "ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000", "after": SHA,
        "repository": {"full_name": "acme/app", "name": "app", "owner": {"login": "acme"}, "default_branch": "main",
                       "clone_url": "https://github.example/acme/app.git"},
        "installation": {"id": 42}, "sender": {"login": "dev", "id": 9},
        "head_commit": {"id": SHA, "message": "deploy"},
    })
}

/// The `job.dispatch` shape the reference agent reads (docs/agent-protocol.md, "Job dispatch"):
/// `secrets` at the top level as a map of strings; `environment` a string and
/// `environmentVars`/`jobEnv` maps of strings inside `jobConfig`; empty ones omitted, never
/// `null`; no secret fields left in `jobConfig`; no internal keys.
fn check_shape(frame: &Value) {
    fn strings(v: &Value, what: &str, frame: &Value) {
        let m = v
            .as_object()
            .unwrap_or_else(|| panic!("{what} is not a map: {frame}"));
        assert!(!m.is_empty(), "{what} is sent empty: {frame}");
        assert!(
            m.values().all(Value::is_string),
            "{what} has a non-string: {frame}"
        );
    }
    fn no_nulls(v: &Value, at: &str) {
        match v {
            Value::Null => panic!("null at {at}"),
            Value::Object(m) if at.is_empty() || at == "jobConfig" => {
                for (k, v) in m {
                    if k != "event" {
                        no_nulls(v, k);
                    }
                }
            }
            _ => {}
        }
    }
    assert_eq!(frame["type"], "job.dispatch");
    no_nulls(frame, "");
    if let Some(s) = frame.get("secrets") {
        strings(s, "secrets", frame);
    }
    let config = &frame["jobConfig"];
    assert!(config.is_object(), "{frame}");
    if let Some(e) = config.get("environment") {
        assert!(e.as_str().is_some_and(|e| !e.is_empty()), "{frame}");
    }
    for key in ["environmentVars", "jobEnv"] {
        if let Some(v) = config.get(key) {
            strings(v, key, frame);
        }
    }
    for key in [
        "secrets",
        "namespacedSecrets",
        "npmRegistries",
        "installEnvSecrets",
    ] {
        assert!(config.get(key).is_none(), "{key} in jobConfig: {frame}");
    }
    assert!(frame.get("secretsRequest").is_none(), "{frame}");
    assert!(frame.get("credentials").is_none(), "{frame}");
}

fn secrets_of(job: &Value) -> Value {
    job.get("secrets").cloned().unwrap_or(json!({}))
}

#[test]
fn jobs_get_their_environments_secrets_at_dispatch_also_after_a_restart() {
    let mut w = world();
    // Queued while no agent is connected, then the daemon restarts: resolution happens when the
    // job is sent, so the new daemon resolves it.
    w.deliver("push", "sec-push", push_body());
    w.s.d.terminate();
    w.s.d = Daemon::start(&w.env);
    w.s.d.wait_ready_status(200, T);
    let token = agent_token(&w.s, json!({}));
    let mut agent = TestAgent::online(w.s.d.addr, "secrets-agent", &token);
    let jobs = w.dispatched(&mut agent, 5);
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["both", "docs", "plain", "preview", "ship"]);
    let job = |n: &str| &jobs.iter().find(|(name, _)| name == n).unwrap().1;

    // prod → aws/prod, over the org-wide secrets; nothing of other scopes or orgs.
    let ship = job("ship");
    assert_eq!(
        secrets_of(ship),
        json!({"NPM_TOKEN": ORG_NPM, "DB_PASSWORD": PROD_DB, "AWS_KEY": PROD_AWS})
    );
    assert_eq!(ship["jobConfig"]["environment"], "prod");
    assert_eq!(
        ship["jobConfig"]["environmentVars"],
        json!({"REGION": "eu-west-1"})
    );
    assert_eq!(ship["jobConfig"]["jobEnv"], json!({"LOG_LEVEL": "debug"}));
    // prod then staging: staging's AWS_KEY wins, prod's DB_PASSWORD stays.
    assert_eq!(
        secrets_of(job("both")),
        json!({"NPM_TOKEN": ORG_NPM, "DB_PASSWORD": PROD_DB, "AWS_KEY": STAGING_AWS})
    );
    // preview-42 resolves through the glob environment previews (pattern preview-*).
    let preview = job("preview");
    assert_eq!(
        secrets_of(preview),
        json!({"NPM_TOKEN": ORG_NPM, "DB_PASSWORD": ORG_DB, "PREVIEW_URL": PREVIEW_URL})
    );
    assert_eq!(preview["jobConfig"]["environment"], "preview-42");
    // No environment: the org-wide secrets only, and no environment fields.
    let plain = job("plain");
    assert_eq!(
        secrets_of(plain),
        json!({"NPM_TOKEN": ORG_NPM, "DB_PASSWORD": ORG_DB})
    );
    for key in ["environment", "environmentVars", "jobEnv"] {
        assert!(plain["jobConfig"].get(key).is_none(), "{plain}");
    }
    assert_eq!(
        job("docs")["jobConfig"]["environmentVars"],
        json!({"DOCS_HOST": "docs.example"})
    );

    // A missing environment and an undecryptable secret fail their jobs with the reason.
    let run = w.q("SELECT run_id::text FROM execution_runs");
    let error = |n: &str| {
        w.q(&format!(
            "SELECT status || '|' || coalesce(error_message, '') FROM execution_jobs WHERE job_name = '{n}'"
        ))
    };
    wait_value(
        PgCluster::shared(),
        &w.s.db,
        "SELECT count(*) FROM execution_jobs WHERE status = 'failed'",
        "2",
    );
    let broken = error("broken");
    assert!(
        broken.starts_with("failed|the job's environment \"nope\" does not exist"),
        "{broken}"
    );
    let sealed = error("sealed");
    assert!(
        sealed.starts_with(
            "failed|the secret \"VAULT_TOKEN\" (org \"acme\", scope \"vault\") cannot be decrypted"
        ),
        "{sealed}"
    );
    assert!(!sealed.contains(VAULT), "{sealed}");

    // runs show: environments, secret names, the step's accessed names, the failures.
    let shown = w.runs_show(&[&run]);
    for want in [
        "  ship [success]",
        "    environments: prod\n    secrets: AWS_KEY, DB_PASSWORD, NPM_TOKEN\n",
        "    environments: preview-42 (environment previews)\n",
        "      secrets accessed: AWS_KEY\n",
        "the job's environment \"nope\" does not exist in its org",
    ] {
        assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
    }
    for value in ALL {
        assert!(!shown.contains(value), "{shown}");
    }

    // The audit log: one resolve row per layer, attributed to the run and job, names only.
    let audit = w.q(
        "SELECT string_agg(context_name || ':' || secret_keys::text || ':' || outcome, ' ' ORDER BY context_name)
           FROM secret_audit_log a JOIN execution_jobs j ON j.job_id = a.job_id
          WHERE a.action = 'resolve' AND j.job_name = 'ship' AND a.run_id = j.run_id
            AND a.org_id = 'acme' AND a.user_id LIKE 'orchestrator:%'",
    );
    assert_eq!(
        audit,
        r#"__org__:["DB_PASSWORD", "NPM_TOKEN"]:allowed prod:["AWS_KEY", "DB_PASSWORD"]:allowed"#
    );

    // No value at rest: not in the queue, the jobs, the steps, the events, the audit log; nor
    // in the daemon's log.
    PgCluster::shared().assert_dump_lacks(&w.s.db, &ALL);
    let log = w.s.d.stderr();
    assert!(log.contains("failed at dispatch"), "{log}");
    for value in ALL {
        assert!(!log.contains(value), "{value} in the daemon's log");
    }
}

#[test]
fn a_fork_pull_request_gets_no_secrets_unless_the_environment_allows_it() {
    let w = world();
    w.deliver(
        "pull_request",
        "sec-fork",
        json!({
            "action": "opened", "number": 9,
            "pull_request": {"number": 9,
                "head": {"ref": "patch-1", "sha": PR_SHA, "repo": {"full_name": "mallory/app"}},
                "base": {"ref": "main", "sha": SHA, "repo": {"full_name": "acme/app"}}},
            "repository": {"full_name": "acme/app", "name": "app", "owner": {"login": "acme"}, "default_branch": "main"},
            "installation": {"id": 42}, "sender": {"login": "mallory", "id": 66},
        }),
    );
    let token = agent_token(&w.s, json!({}));
    let mut agent = TestAgent::online(w.s.d.addr, "fork-secrets-agent", &token);
    // The undecryptable `vault` is withheld, never opened: that job runs too.
    let jobs = w.dispatched(&mut agent, 6);
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["both", "docs", "plain", "preview", "sealed", "ship"]
    );
    for (name, job) in &jobs {
        let config = &job["jobConfig"];
        assert_eq!(config["event"]["isForkPR"], true);
        if name == "docs" {
            // `open` allows untrusted events: its secrets and variables, nothing org-wide.
            assert_eq!(secrets_of(job), json!({"PUBLIC_KEY": PUBLIC_KEY}));
            assert_eq!(
                config["environmentVars"],
                json!({"DOCS_HOST": "docs.example"})
            );
            continue;
        }
        assert!(job.get("secrets").is_none(), "{name}: {job}");
        assert!(config.get("environmentVars").is_none(), "{name}: {job}");
    }
    // The job still knows its environment's name and its own env.
    let ship = &jobs.iter().find(|(n, _)| n == "ship").unwrap().1;
    assert_eq!(ship["jobConfig"]["environment"], "prod");
    assert_eq!(ship["jobConfig"]["jobEnv"], json!({"LOG_LEVEL": "debug"}));

    let run = w.q("SELECT run_id::text FROM execution_runs");
    let shown = w.runs_show(&[&run]);
    for want in [
        "    environments: prod\n    withheld: secrets and variables of prod, org-wide (secrets: AWS_KEY, DB_PASSWORD, NPM_TOKEN): the job runs code from a pull request of the fork mallory/app\n",
        "    withheld: secrets and variables of org-wide (secrets: DB_PASSWORD, NPM_TOKEN): the job runs code from a pull request of the fork mallory/app\n",
    ] {
        assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
    }
    let json_out = w.runs_show(&[&run, "--json"]);
    let v: Value = serde_json::from_str(&json_out).unwrap();
    let docs = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "docs")
        .unwrap();
    assert_eq!(docs["secrets"]["secrets"], json!(["PUBLIC_KEY"]));
    assert_eq!(docs["secrets"]["withheld"]["orgWide"], true);
    assert_eq!(docs["environments"], json!(["open"]));
    // Withheld secrets are audited as denied.
    assert_eq!(
        w.q(
            "SELECT count(*) FROM secret_audit_log WHERE action = 'resolve' AND outcome = 'denied'"
        ),
        "6"
    );
    PgCluster::shared().assert_dump_lacks(&w.s.db, &ALL);
}
