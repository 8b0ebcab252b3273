//! Workflow caches (`ctx.cache`) end to end on both backends (docs/caches.md, "Workflow caches"):
//! save then restore by exact key and by prefix, an existing entry skipped, a fork's save never
//! visible to a trusted run, the organization's quota evicting the least recently used; and
//! `kici-admin storage usage` / `storage prune` on a real store. Helpers: tests/it/caches.rs.

use crate::caches::{ask, get, put, world, Backend, World};
use crate::support;

use std::{collections::HashMap, time::Duration};

use jiff::{SignedDuration, Timestamp};
use kici_orchestrator::{
    runs::{
        requirements::Requirements,
        store::{
            queue::NewJob,
            runs::{create_run, NewRun},
        },
    },
    storage::{Area, Meta},
};
use serde_json::{json, Value};
use support::{
    agent::{agent_token, TestAgent},
    daemon::*,
};

const T: Duration = Duration::from_secs(10);

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
    // Workflow caches expire after KICI_USER_CACHE_TTL_MS (7 days), not the tarballs' 30.
    let last_week = Meta::new(now - SignedDuration::from_hours(24 * 8));
    put("cache/other/app/shared/k.tar.gz", b"abcd", &last_week);
    put(
        "cache/acme/app/shared/yesterday.tar.gz",
        b"",
        &Meta::new(now - SignedDuration::from_hours(24)),
    );
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
            "cache acme 2 3",
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
