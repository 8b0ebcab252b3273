//! Source and dependency caches end to end (docs/caches.md), on both backends: a real
//! daemon, PostgreSQL, the fake GitHub, the scripted agent uploading and downloading through the
//! presigned URLs it is given (filesystem blob routes, or s3s-fs verifying SigV4). First push →
//! `__build__basic` first, its uploads at the layout's keys, then execution jobs with URLs that
//! return the uploaded bytes; a second push → no build job; an expired entry → rebuilt; a failed
//! build (or a success without `buildComplete`) → run failed, jobs skipped; two runs at once → one
//! build. Workflow caches and the storage commands: tests/it/caches_workflow.rs, with the helpers
//! here.

use crate::support;

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kici_orchestrator::storage::{Area, Meta, Storage};
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
pub(crate) enum Backend {
    Fs,
    S3,
}

pub(crate) struct World {
    pub(crate) s: Setup,
    _gh: FakeGitHub,
    _s3: Option<S3Server>,
    /// The same store the daemon uses, to look at and age entries.
    pub(crate) store: Storage,
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

pub(crate) fn world(backend: Backend, extra: &[(&str, &str)]) -> World {
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
    github_source(&s.d, OWNER, "caches", "7788", &key_pem, SECRET);
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
        let body = github_push_body(
            "acme/app",
            "main",
            "0000000000000000000000000000000000000000",
            SHA,
        );
        let (r, _) = post_github_push(&self.s.d, SECRET, "7788", &delivery, &body, &[]);
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
pub(crate) fn put(url: &str, body: &[u8]) {
    let dir = std::env::temp_dir().join(format!("kici-caches-put-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(kici_orchestrator::crypto::random_uuid());
    std::fs::write(&file, body).unwrap();
    let (status, text) = curl(&["-T", file.to_str().unwrap(), url]);
    let _ = std::fs::remove_file(&file);
    assert!((200..300).contains(&status), "PUT {url}: {status} {text}");
}

pub(crate) fn get(url: &str) -> String {
    let (status, body) = curl(&[url]);
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// Asks and waits for the answer of `reply` type.
pub(crate) fn ask(a: &mut TestAgent, frame: Value, reply: &str) -> Value {
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

#[test]
fn a_build_reporting_success_without_build_complete_fails_its_run() {
    let w = world(Backend::Fs, &[]);
    let token = agent_token(&w.s, json!({}));
    let run = w.push();
    let mut a = TestAgent::online(w.s.d.addr, "builder-3", &token);
    let b = a.dispatch(T).expect("the build job");
    assert_eq!(b["jobConfig"]["buildOnly"], true);
    a.ack(&b);
    a.status(&b, "running", Value::Null);
    a.status(&b, "success", json!({"durationMs": 3, "stepResults": []}));
    w.run_status(&run, "failed");
    let jobs = w.sql(&format!(
        "SELECT string_agg(job_name || '=' || status, ',' ORDER BY job_name) FROM execution_jobs WHERE run_id = '{run}'"
    ));
    assert_eq!(jobs, "__build__basic=failed,test=skipped");
    let error = w.sql(&format!(
        "SELECT error_message FROM execution_jobs WHERE run_id = '{run}' AND job_name = '__build__basic'"
    ));
    assert!(error.contains("buildComplete"), "{error}");
}
