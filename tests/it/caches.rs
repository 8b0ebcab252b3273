//! Source, dependency and workflow caches end to end (docs/caches.md), on both backends: a real
//! daemon, PostgreSQL, the fake GitHub, the scripted agent uploading and downloading through the
//! presigned URLs it is given (filesystem blob routes, or s3s-fs verifying SigV4). First push →
//! `__build__basic` first, its uploads at the layout's keys, then execution jobs with URLs that
//! return the uploaded bytes; a second push → no build job; an expired entry → rebuilt; a failed
//! build → run failed, jobs skipped; two runs at once → one build; workflow caches by exact key and
//! prefix, a fork's save never seen by a trusted run, the quota evicting the least recently used.

use crate::support;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp};
use kici_orchestrator::{
    runs::{
        requirements::Requirements,
        store::{
            queue::NewJob,
            runs::{create_run, NewRun},
        },
    },
    storage::{Area, Meta, Storage},
};
use serde_json::{json, Value};
use support::{
    agent::{agent_token, one, wait_value, Setup, TestAgent, OWNER},
    daemon::*,
    fake_github::{rsa_key_pair, FakeGitHub},
    pg::PgCluster,
    s3::S3Server,
    storage::curl,
    webhook::*,
};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "caches webhook secret";
const SHA: &str = "2222222222222222222222222222222222222222";
const CONTENT: &str = "c0ffee00";
const LOCKFILE: &str = "10cf11e0";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Fs,
    S3,
}

struct World {
    s: Setup,
    _gh: FakeGitHub,
    _s3: Option<S3Server>,
    /// The same store the daemon uses, to look at and age entries.
    store: Storage,
    pg: &'static PgCluster,
    deliveries: std::cell::Cell<u32>,
}

fn lock() -> Vec<u8> {
    json!({
        "schemaVersion": 29,
        "source": {"file": ".kici/workflows/basic.ts", "export": "#default"},
        "lockfileHash": LOCKFILE,
        "workflows": [
            {"name": "basic", "contentHash": CONTENT,
             "source": {"file": ".kici/workflows/basic.ts", "export": "#default"},
             "triggers": [{"_type": "push", "branches": [{"type": "glob", "pattern": "main"}], "paths": []}],
             "jobs": [{"_type": "static", "name": "test", "runsOn": [{"kind": "exact", "value": "linux"}],
                       "needs": [], "steps": [{"name": "hello", "hasOutputs": false}]}]},
        ],
    })
    .to_string()
    .into_bytes()
}

fn world(backend: Backend, extra: &[(&str, &str)]) -> World {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(7788, "Caches App", "caches-app", public_der);
    gh.put_file("acme/app", SHA, ".kici/kici.lock.json", &lock());
    let pg = PgCluster::shared();
    let s3 = (backend == Backend::S3).then(|| {
        let s3 = S3Server::start();
        s3.create_bucket("cache");
        s3
    });
    let mut env: Vec<(String, String)> = vec![
        ("KICI_GITHUB_API_URL".into(), gh.url.clone()),
        ("KICI_CACHE_BUILD_JOBS".into(), "true".into()),
    ];
    env.extend(s3.iter().flat_map(|s| s.env("cache")));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = support::agent::setup(pg, &refs);
    let store_vars: Vec<(String, String)> = match &s3 {
        Some(s3) => s3.env("cache"),
        None => vec![
            ("KICI_STORAGE_TYPE".into(), "filesystem".into()),
            ("KICI_STORAGE_FS_PATH".into(), s.logs.display().to_string()),
            ("KICI_SECRET_KEY".into(), TEST_KEY.into()),
        ],
    };
    let store = support::storage::open(&store_vars);
    let r = admin(
        &s.d,
        OWNER,
        "POST",
        "/sources",
        json!({"provider": "github", "name": "caches", "appId": "7788", "privateKey": key_pem,
               "webhookSecret": SECRET}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    World {
        s,
        _gh: gh,
        _s3: s3,
        store,
        pg,
        deliveries: std::cell::Cell::new(0),
    }
}

impl World {
    /// A push of the same commit (a new delivery); returns the run it created.
    fn push(&self) -> String {
        let n = self.deliveries.get() + 1;
        self.deliveries.set(n);
        let delivery = format!("caches-{n}");
        let body = json!({
            "ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000", "after": SHA,
            "repository": {"full_name": "acme/app", "name": "app", "owner": {"login": "acme"},
                           "default_branch": "main", "clone_url": "https://github.example/acme/app.git"},
            "installation": {"id": 42}, "sender": {"login": "dev", "id": 9},
            "head_commit": {"id": SHA, "message": "change"},
        })
        .to_string();
        let sig = format!("sha256={}", sign(SECRET, body.as_bytes()));
        let r = post(
            &self.s.d,
            "/webhook/acme/github",
            &[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", &delivery),
                ("X-GitHub-Hook-Installation-Target-ID", "7788"),
                ("X-Hub-Signature-256", &sig),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert!(r.status < 300, "{}", String::from_utf8_lossy(&r.body));
        let sql = format!(
            "SELECT coalesce(run_id::text, '') FROM event_log WHERE delivery_id = '{delivery}' \
             AND status = 'processed'"
        );
        let deadline = Instant::now() + T;
        loop {
            let run = one(self.pg, &self.s.db, &sql);
            if !run.is_empty() {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "delivery {delivery} not processed"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn sql(&self, sql: &str) -> String {
        one(self.pg, &self.s.db, sql)
    }

    fn run_status(&self, run: &str, want: &str) {
        wait_value(
            self.pg,
            &self.s.db,
            &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
            want,
        );
    }
}

/// The agent's presigned PUT (what the real agent does with `fetch`).
fn put(url: &str, body: &[u8]) {
    let dir = std::env::temp_dir().join(format!("kici-caches-put-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(kici_orchestrator::crypto::random_uuid());
    std::fs::write(&file, body).unwrap();
    let (status, text) = curl(&["-T", file.to_str().unwrap(), url]);
    let _ = std::fs::remove_file(&file);
    assert!((200..300).contains(&status), "PUT {url}: {status} {text}");
}

fn get(url: &str) -> String {
    let (status, body) = curl(&[url]);
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// Asks and waits for the answer of `reply` type.
fn ask(a: &mut TestAgent, frame: Value, reply: &str) -> Value {
    a.send(frame);
    a.recv_type(reply, T)
        .unwrap_or_else(|| panic!("no {reply}"))
}

/// The build job's work: both tarballs uploaded and committed, then success.
fn build(a: &mut TestAgent, job: &Value, source: &[u8], deps: &[u8], deps_hash: &str) {
    let cfg = &job["jobConfig"];
    assert_eq!(cfg["buildOnly"], true, "{job}");
    a.ack(job);
    a.status(job, "running", Value::Null);
    let base = json!({"jobId": job["jobId"], "runId": job["runId"]});
    let with = |extra: Value| {
        let mut f = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            f[k] = v.clone();
        }
        f
    };
    let up = ask(
        a,
        with(
            json!({"type": "cache.upload.request", "messageId": "u-src", "cacheType": "source",
                    "contentHash": cfg["contentHash"]}),
        ),
        "cache.upload.response",
    );
    put(up["uploadUrl"].as_str().unwrap(), source);
    a.send(with(
        json!({"type": "cache.upload.complete", "messageId": "c-src", "cacheType": "source",
                       "contentHash": cfg["contentHash"]}),
    ));
    let deps_frame = json!({"cacheType": "deps", "lockfileHash": cfg["lockfileHash"],
                            "platform": cfg["platform"], "arch": cfg["arch"]});
    let mut req = with(deps_frame.clone());
    req["type"] = json!("cache.upload.request");
    req["messageId"] = json!("u-deps");
    let up = ask(a, req, "cache.upload.response");
    put(up["uploadUrl"].as_str().unwrap(), deps);
    let mut done = with(deps_frame);
    done["type"] = json!("cache.upload.complete");
    done["messageId"] = json!("c-deps");
    done["depsHash"] = json!(deps_hash);
    a.send(done);
    // The completions are handled in order, before this answer.
    ask(
        a,
        with(json!({"type": "cache.user.restore.request", "messageId": "sync", "key": "sync"})),
        "cache.user.restore.response",
    );
    a.status(
        job,
        "success",
        json!({"durationMs": 5, "buildComplete": true, "stepResults": []}),
    );
    a.send(json!({"type": "agent.status", "messageId": "s", "agentId": a.id, "activeJobs": 0}));
}

fn source_key() -> String {
    format!("source/{CONTENT}.tar.gz")
}

fn deps_key() -> String {
    format!("deps/linux-x64/{LOCKFILE}.tar.gz")
}

fn build_then_warm(backend: Backend) {
    let w = world(backend, &[]);
    let token = agent_token(&w.s, json!({}));
    let run1 = w.push();
    let mut a = TestAgent::online(w.s.d.addr, "builder-1", &token);
    let first = a.dispatch(T).expect("the build job");
    assert_eq!(first["jobConfig"]["name"], "__build__basic", "{first}");
    assert!(first.get("sourceTarUrl").is_none() && first.get("__cacheTarballs").is_none());
    build(
        &mut a,
        &first,
        b"source tarball one",
        b"deps tarball one",
        "d0d0",
    );
    // The uploads landed at the layout's keys, committed.
    for key in [source_key(), deps_key()] {
        let info = w.store.head(Area::Cache, &key).unwrap();
        assert!(
            info.is_some_and(|i| i.meta.is_some()),
            "{key} not committed"
        );
    }
    let hash = w
        .store
        .get(Area::Cache, &format!("deps/linux-x64/{LOCKFILE}.hash"));
    assert_eq!(hash.unwrap().as_deref(), Some(&b"d0d0"[..]));

    let job = a.dispatch(T).expect("the execution job");
    assert_eq!(job["jobConfig"]["name"], "test");
    assert_eq!(job["sourceTarHash"], CONTENT);
    assert_eq!(job["depsHash"], "d0d0");
    assert_eq!(
        get(job["sourceTarUrl"].as_str().unwrap()),
        "source tarball one"
    );
    assert_eq!(get(job["depsUrl"].as_str().unwrap()), "deps tarball one");
    assert_eq!(
        (job["orgId"].as_str(), job["cacheRefScope"].as_str()),
        (Some("acme"), Some("shared"))
    );
    a.run_job(&job, "success");
    w.run_status(&run1, "success");
    let test_job = job["jobId"].as_str().unwrap();
    assert_eq!(
        w.sql(&format!("SELECT string_agg(kind || '=' || hit, ',' ORDER BY kind) FROM job_cache_use WHERE job_id = '{test_job}'")),
        "deps=true,source=true"
    );

    // The same content again: no build job, the URLs in the first dispatch.
    let run2 = w.push();
    let job = a.dispatch(T).expect("a warm job");
    assert_eq!(job["jobConfig"]["name"], "test", "{job}");
    assert_eq!(
        get(job["sourceTarUrl"].as_str().unwrap()),
        "source tarball one"
    );
    a.run_job(&job, "success");
    w.run_status(&run2, "success");
    assert_eq!(
        w.sql(&format!(
            "SELECT count(*) FROM execution_jobs WHERE run_id = '{run2}'"
        )),
        "1"
    );
    let shown = cli(
        &[
            "--url",
            &format!("http://{}", w.s.d.addr),
            "--token",
            OWNER,
            "runs",
            "show",
            &run1,
        ],
        &[],
    );
    let text = stdout(&shown);
    assert!(
        text.contains("__build__basic") && text.contains("source hit"),
        "{text}"
    );

    // Idle past the TTL: a miss, deleted, and built again.
    let old = Timestamp::now() - SignedDuration::from_hours(24 * 31);
    assert!(w
        .store
        .set_meta(Area::Cache, &source_key(), &Meta::new(old))
        .unwrap());
    let run3 = w.push();
    assert!(
        w.store.head(Area::Cache, &source_key()).unwrap().is_none(),
        "expired entry deleted"
    );
    let rebuild = a.dispatch(T).expect("the build job again");
    assert_eq!(rebuild["jobConfig"]["name"], "__build__basic");
    build(
        &mut a,
        &rebuild,
        b"source tarball two",
        b"deps tarball one",
        "d0d0",
    );
    let job = a.dispatch(T).expect("the execution job");
    assert_eq!(
        get(job["sourceTarUrl"].as_str().unwrap()),
        "source tarball two"
    );
    a.run_job(&job, "success");
    w.run_status(&run3, "success");
}

#[test]
fn first_push_builds_and_later_pushes_start_warm_on_the_filesystem() {
    build_then_warm(Backend::Fs);
}

#[test]
fn first_push_builds_and_later_pushes_start_warm_on_s3() {
    build_then_warm(Backend::S3);
}

#[test]
fn a_failed_build_fails_the_run_and_two_runs_share_one_build() {
    let w = world(Backend::Fs, &[]);
    let token = agent_token(&w.s, json!({}));
    // Two runs need the same tarballs before any agent is there: one build job between them.
    let run1 = w.push();
    let run2 = w.push();
    let mut a = TestAgent::online(w.s.d.addr, "builder-2", &token);
    let b = a.dispatch(T).expect("one build job");
    assert_eq!(b["jobConfig"]["name"], "__build__basic");
    a.ack(&b);
    a.status(&b, "running", Value::Null);
    a.status(
        &b,
        "failed",
        json!({"durationMs": 3, "error": {"message": "npm ci failed"}, "stepResults": []}),
    );
    a.send(json!({"type": "agent.status", "messageId": "s", "agentId": a.id, "activeJobs": 0}));
    // Whichever run was planned first builds; the other waits for it.
    let builder = b["runId"].as_str().unwrap().to_owned();
    let waiter = if builder == run1 { &run2 } else { &run1 };
    w.run_status(&run1, "failed");
    w.run_status(&run2, "failed");
    assert!(
        a.dispatch(Duration::from_millis(500)).is_none(),
        "nothing else is dispatched"
    );
    for run in [&run1, &run2] {
        assert_eq!(
            w.sql(&format!(
                "SELECT status FROM execution_jobs WHERE run_id = '{run}' AND job_name = 'test'"
            )),
            "skipped"
        );
    }
    let reason = w.sql(&format!(
        "SELECT error_message FROM execution_jobs WHERE run_id = '{waiter}' AND job_name = '__build__basic'"
    ));
    assert!(
        reason.contains(&builder) && reason.contains("npm ci failed"),
        "{reason}"
    );

    // Again, two runs at once; this time the build succeeds and both run warm.
    let run3 = w.push();
    let run4 = w.push();
    let b = a.dispatch(T).expect("one build job");
    build(&mut a, &b, b"src", b"deps", "beef");
    let mut names = Vec::new();
    for _ in 0..2 {
        let job = a.dispatch(T).expect("an execution job");
        names.push(job["jobConfig"]["name"].as_str().unwrap().to_owned());
        assert_eq!(get(job["sourceTarUrl"].as_str().unwrap()), "src");
        a.run_job(&job, "success");
    }
    assert_eq!(names, ["test", "test"]);
    w.run_status(&run3, "success");
    w.run_status(&run4, "success");
    assert_eq!(
        w.sql("SELECT count(*) FROM dispatch_queue WHERE job_name = '__build__basic' AND agent_id IS NOT NULL"),
        "2",
        "one dispatched build per pair of runs"
    );
}

/// Queues one job of `acme/app` whose event is trusted or from a fork; returns its run.
fn queue_user_job(db: &str, fork: bool) -> String {
    let mut client = postgres::Client::connect(db, postgres::NoTls).unwrap();
    let run_id = kici_orchestrator::crypto::random_uuid();
    let mut dispatch = support::agent::dispatch_body("cache-user");
    dispatch["jobConfig"]["event"]["sourceRepo"] = json!("acme/app");
    dispatch["jobConfig"]["event"]["isForkPR"] = json!(fork);
    let job = NewJob {
        id: kici_orchestrator::crypto::random_uuid(),
        run_id: run_id.clone(),
        workflow_name: "basic".into(),
        job_name: "cache-user".into(),
        dispatch,
        requirements: Requirements::default(),
        routing_key: None,
    };
    let run = NewRun {
        run_id: run_id.clone(),
        workflow_name: "basic".into(),
        provider: Some("github".into()),
        routing_key: None,
        repo: Some("acme/app".into()),
        git_ref: Some("main".into()),
        sha: None,
        delivery_id: None,
        trigger_event: Some("push".into()),
        trigger_decision: None,
        jobs: vec![job],
        waiting: Vec::new(),
        needs: Vec::new(),
    };
    create_run(&mut client, &run).unwrap();
    run_id
}

/// A running job of a new run (trusted or fork) on `a`.
fn user_job(w: &World, a: &mut TestAgent, fork: bool) -> Value {
    queue_user_job(&w.s.db, fork);
    let job = a.dispatch(T).expect("a job");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    job
}

fn save(a: &mut TestAgent, job: &Value, key: &str, body: &[u8]) -> bool {
    let r = ask(
        a,
        json!({"type": "cache.user.save.request", "messageId": format!("s-{key}"), "jobId": job["jobId"], "key": key}),
        "cache.user.save.response",
    );
    if r["skip"] == true {
        return false;
    }
    put(r["uploadUrl"].as_str().unwrap(), body);
    a.send(json!({"type": "cache.user.save.complete", "messageId": "c", "jobId": job["jobId"], "key": key,
                  "tarHash": "abcd", "sizeBytes": body.len()}));
    true
}

fn restore(a: &mut TestAgent, job: &Value, key: &str, prefixes: &[&str]) -> Value {
    ask(
        a,
        json!({"type": "cache.user.restore.request", "messageId": format!("r-{key}"), "jobId": job["jobId"],
               "key": key, "restoreKeys": prefixes}),
        "cache.user.restore.response",
    )
}

fn workflow_caches(backend: Backend) {
    let w = world(backend, &[("KICI_USER_CACHE_QUOTA_BYTES", "100")]);
    let token = agent_token(&w.s, json!({}));
    let mut a = TestAgent::online(w.s.d.addr, "cacher", &token);
    let trusted = user_job(&w, &mut a, false);
    assert!(save(
        &mut a,
        &trusted,
        "npm-linux-v1",
        b"modules v1 ------------------- 40 bytes"
    ));
    let hit = restore(&mut a, &trusted, "npm-linux-v1", &[]);
    assert_eq!(
        (hit["hit"].as_bool(), hit["tarHash"].as_str()),
        (Some(true), Some("abcd")),
        "{hit}"
    );
    assert_eq!(
        get(hit["downloadUrl"].as_str().unwrap()),
        "modules v1 ------------------- 40 bytes"
    );
    assert!(
        !save(&mut a, &trusted, "npm-linux-v1", b"again"),
        "an existing entry is skipped"
    );
    let by_prefix = restore(
        &mut a,
        &trusted,
        "npm-linux-v2",
        &["nothing-", "npm-linux-"],
    );
    assert_eq!(by_prefix["matchedKey"], "npm-linux-v1", "{by_prefix}");
    assert_eq!(restore(&mut a, &trusted, "other", &["zzz"])["hit"], false);
    a.status(
        &trusted,
        "success",
        json!({"durationMs": 1, "stepResults": []}),
    );
    a.send(json!({"type": "agent.status", "messageId": "s", "agentId": a.id, "activeJobs": 0}));

    // A fork saves under its own run: it reads it back, a trusted run never sees it.
    let fork = user_job(&w, &mut a, true);
    assert!(save(&mut a, &fork, "npm-linux-v1", b"poisoned"));
    assert_eq!(
        get(restore(&mut a, &fork, "npm-linux-v1", &[])["downloadUrl"]
            .as_str()
            .unwrap()),
        "poisoned"
    );
    assert!(save(&mut a, &fork, "fork-only", b"f"));
    a.status(
        &fork,
        "success",
        json!({"durationMs": 1, "stepResults": []}),
    );
    a.send(json!({"type": "agent.status", "messageId": "s", "agentId": a.id, "activeJobs": 0}));
    let trusted = user_job(&w, &mut a, false);
    assert_eq!(
        restore(&mut a, &trusted, "fork-only", &["fork"])["hit"],
        false
    );
    let hit = restore(&mut a, &trusted, "npm-linux-v1", &[]);
    assert_eq!(
        get(hit["downloadUrl"].as_str().unwrap()),
        "modules v1 ------------------- 40 bytes"
    );

    // Quota 100 bytes: v1 (40, just read) + poisoned (8) + f (1) + b (40) fit; c (40) does not,
    // so the least recently used go first: the fork's entries, then b (v1 was read after b).
    assert!(save(&mut a, &trusted, "b", &[b'b'; 40]));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(restore(&mut a, &trusted, "npm-linux-v1", &[])["hit"], true);
    std::thread::sleep(Duration::from_millis(20));
    assert!(save(&mut a, &trusted, "c", &[b'c'; 40]));
    let _ = restore(&mut a, &trusted, "sync", &[]);
    assert_eq!(
        restore(&mut a, &trusted, "b", &[])["hit"],
        false,
        "b was least recently used"
    );
    assert_eq!(restore(&mut a, &trusted, "npm-linux-v1", &[])["hit"], true);
    assert_eq!(restore(&mut a, &trusted, "c", &[])["hit"], true);
    let left: HashMap<String, u64> = w
        .store
        .list(Area::Cache, "cache/acme/")
        .unwrap()
        .into_iter()
        .filter(|l| l.key.ends_with(".tar.gz"))
        .map(|l| (l.key, l.size))
        .collect();
    assert!(left.values().sum::<u64>() <= 100, "{left:?}");
}

#[test]
fn workflow_caches_on_the_filesystem() {
    workflow_caches(Backend::Fs);
}

#[test]
fn workflow_caches_on_s3() {
    workflow_caches(Backend::S3);
}

#[test]
fn storage_usage_and_prune_from_the_shell() {
    let dir = std::env::temp_dir().join(format!("kici-caches-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env: Vec<(String, String)> = vec![
        ("KICI_STORAGE_TYPE".into(), "filesystem".into()),
        ("KICI_STORAGE_FS_PATH".into(), dir.display().to_string()),
        ("KICI_SECRET_KEY".into(), TEST_KEY.into()),
    ];
    let store = support::storage::open(&env);
    let now = Timestamp::now();
    let old = Meta::new(now - SignedDuration::from_hours(24 * 31));
    let put = |key: &str, bytes: &[u8], meta: &Meta| {
        store.put(Area::Cache, key, bytes, Some(meta)).unwrap()
    };
    put("source/fresh.tar.gz", b"0123456789", &Meta::new(now));
    put("source/stale.tar.gz", b"01234", &old);
    put("deps/linux-x64/stale.tar.gz", b"0123456", &old);
    put("deps/linux-x64/stale.hash", b"h", &Meta::new(now));
    put("cache/acme/app/shared/k.tar.gz", b"abc", &Meta::new(now));
    put("cache/other/app/shared/k.tar.gz", b"abcd", &old);
    let json_of = |args: &[&str]| -> Value {
        let out = cli(args, &env);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let usage = json_of(&["storage", "usage", "--json"]);
    let rows: Vec<String> = usage["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["kind"].as_str().unwrap(),
                r["org"].as_str().unwrap_or("-"),
                r["objects"],
                r["bytes"]
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "cache acme 1 3",
            "cache other 1 4",
            "deps - 2 8",
            "source - 2 15"
        ]
    );
    let acme = json_of(&["storage", "usage", "--org", "acme", "--json"]);
    assert_eq!(acme["totalBytes"], 3);
    let dry = json_of(&["storage", "prune", "--dry-run", "--json"]);
    let mut removed: Vec<&str> = dry["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            "cache/other/app/shared/k.tar.gz",
            "deps/linux-x64/stale.tar.gz",
            "source/stale.tar.gz"
        ]
    );
    assert!(
        store
            .head(Area::Cache, "source/stale.tar.gz")
            .unwrap()
            .is_some(),
        "a dry run removes nothing"
    );
    let out = cli(&["storage", "prune"], &env);
    assert!(
        stdout(&out).contains("Removed 3 expired entr(ies), 16 bytes."),
        "{}",
        stdout(&out)
    );
    for gone in [
        "source/stale.tar.gz",
        "deps/linux-x64/stale.tar.gz",
        "deps/linux-x64/stale.hash",
    ] {
        assert!(store.head(Area::Cache, gone).unwrap().is_none(), "{gone}");
    }
    assert!(store
        .head(Area::Cache, "source/fresh.tar.gz")
        .unwrap()
        .is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
