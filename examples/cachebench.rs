//! Cache flows for `scripts/bench.sh caches` (a cargo example, not shipped).
//!
//! ```text
//! cachebench --ws ws://127.0.0.1:P/ws --token kat_… --webhook http://127.0.0.1:P/webhook/…
//!            --lock <repo>/.kici/kici.lock.json [--rounds 3] [--install-ms 2000] [--count 200]
//! ```
//!
//! One scripted agent. Push to first step, per round: the lock file gets a new content and
//! lockfile hash (cold: the run starts with its `__build__` job, which "installs dependencies"
//! for `--install-ms`, then uploads both tarballs; the execution job downloads them), then the
//! same content is pushed again (warm: the execution job comes first, with URLs, and downloads).
//! The time from the push to the execution job's first `step.status running` is measured. An
//! execution job dispatched without `depsUrl` installs inline for `--install-ms` too. Then, on one
//! held job, `--count` of each workflow-cache request (save request, restore by exact key, restore
//! by prefix) are timed from send to answer, three every 40 ms (under the link's pace). Prints
//! one JSON line:
//! `{"cold_ms":[..],"warm_ms":[..],"save_p50_ms":..,"save_p99_ms":..,"restore_p50_ms":..,..}`.
//! Bounded: every wait times out (30 s), so the process ends within minutes.

use std::time::{Duration, Instant};

use kici_orchestrator::storage::{presign::Verb, s3};
use serde_json::{json, Value};
use tungstenite::Message;

#[path = "common/mod.rs"]
mod common;
use common::{arg, online, post_webhook, Socket};

const WAIT: Duration = Duration::from_secs(30);

fn send(ws: &mut Socket, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .expect("WebSocket send");
}

fn wait_for(ws: &mut Socket, kind: &str) -> Value {
    common::wait_for(ws, kind, WAIT).unwrap_or_else(|| panic!("no {kind} within {WAIT:?}"))
}

fn http(verb: Verb, url: &str, body: &[u8]) -> Vec<u8> {
    let a = s3::send(&s3::agent(), verb, url, &[], body).expect("storage reachable");
    assert!(
        (200..300).contains(&a.status),
        "{} {}: {}",
        verb.as_str(),
        s3::strip_query(url),
        a.status
    );
    a.body
}

fn write_lock(path: &str, content: &str, lockfile: &str) {
    let lock = json!({"schemaVersion":29,"source":{"file":".kici/workflows/ci.ts","export":"#default"},
        "lockfileHash": lockfile,
        "workflows":[{"name":"ci","contentHash":content,
            "triggers":[{"_type":"push","branches":[{"type":"glob","pattern":"main"}],"paths":[]}],
            "jobs":[{"_type":"static","name":"build","runsOn":[{"kind":"exact","value":"linux"}],"needs":[],"steps":[]}]}]});
    std::fs::write(path, lock.to_string()).expect("write the lock file");
}

fn job_frame(kind: &str, job: &Value) -> Value {
    json!({"type": kind, "messageId": kici_orchestrator::crypto::random_uuid(),
           "runId": job["runId"], "jobId": job["jobId"], "timestamp": 1})
}

fn status(ws: &mut Socket, job: &Value, state: &str, data: Value) {
    let mut f = job_frame("job.status", job);
    f["state"] = json!(state);
    if !data.is_null() {
        f["data"] = data;
    }
    send(ws, f);
}

/// A request frame about `job`, answered with `reply`; returns the answer and the round trip.
fn ask(ws: &mut Socket, job: &Value, mut frame: Value, reply: &str) -> (Value, f64) {
    frame["jobId"] = job["jobId"].clone();
    frame["runId"] = job["runId"].clone();
    frame["messageId"] = json!(kici_orchestrator::crypto::random_uuid());
    let t0 = Instant::now();
    send(ws, frame);
    let answer = wait_for(ws, reply);
    (answer, t0.elapsed().as_secs_f64() * 1000.0)
}

/// The build job: install (sleep), pack, upload both tarballs, success.
fn build(ws: &mut Socket, job: &Value, install: Duration) {
    send(ws, job_frame("job.ack", job));
    status(ws, job, "running", Value::Null);
    std::thread::sleep(install);
    let cfg = job["jobConfig"].clone();
    let tarball = vec![7u8; 64 * 1024];
    for (kind, extra) in [
        ("source", json!({"contentHash": cfg["contentHash"]})),
        (
            "deps",
            json!({"lockfileHash": cfg["lockfileHash"], "platform": "linux", "arch": "x64"}),
        ),
    ] {
        let mut req = extra.clone();
        req["type"] = json!("cache.upload.request");
        req["cacheType"] = json!(kind);
        let (up, _) = ask(ws, job, req, "cache.upload.response");
        let url = up["uploadUrl"].as_str().unwrap_or_default();
        assert!(!url.is_empty(), "no upload URL for {kind}: {up}");
        http(Verb::Put, url, &tarball);
        let mut done = extra;
        done["type"] = json!("cache.upload.complete");
        done["cacheType"] = json!(kind);
        done["depsHash"] = json!("0".repeat(64));
        done["jobId"] = job["jobId"].clone();
        done["messageId"] = json!("complete");
        send(ws, done);
    }
    status(
        ws,
        job,
        "success",
        json!({"durationMs": 1, "buildComplete": true, "stepResults": []}),
    );
}

/// Waits for the execution job of a pushed run (building first when asked to), starts it
/// (downloads, or installs inline on a miss), reports its first step running; returns the job.
fn first_step(ws: &mut Socket, install: Duration) -> Value {
    loop {
        let job = wait_for(ws, "job.dispatch");
        if job["jobConfig"]["buildOnly"] == true {
            build(ws, &job, install);
            continue;
        }
        send(ws, job_frame("job.ack", &job));
        status(ws, &job, "running", Value::Null);
        match (job["sourceTarUrl"].as_str(), job["depsUrl"].as_str()) {
            (Some(src), Some(deps)) => {
                http(Verb::Get, src, &[]);
                http(Verb::Get, deps, &[]);
            }
            _ => std::thread::sleep(install),
        }
        let mut f = job_frame("step.status", &job);
        f["stepIndex"] = json!(0);
        f["stepName"] = json!("first");
        f["state"] = json!("running");
        send(ws, f);
        return job;
    }
}

fn finish(ws: &mut Socket, job: &Value) {
    status(
        ws,
        job,
        "success",
        json!({"durationMs": 1, "stepResults": []}),
    );
    send(
        ws,
        json!({"type":"agent.status","messageId":"s","agentId":"cachebench","activeJobs":0}),
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ws_url = arg(&args, "--ws", None);
    let token = arg(&args, "--token", None);
    let webhook = arg(&args, "--webhook", None);
    let lock = arg(&args, "--lock", None);
    let rounds: usize = arg(&args, "--rounds", Some("3")).parse().expect("--rounds");
    let install = Duration::from_millis(
        arg(&args, "--install-ms", Some("2000"))
            .parse()
            .expect("--install-ms"),
    );
    let count: usize = arg(&args, "--count", Some("200")).parse().expect("--count");
    assert!((1..=20).contains(&rounds) && count <= 10_000 && install.as_secs() <= 60);
    let mut ws = online(
        &ws_url,
        &token,
        "cachebench",
        &[
            "linux",
            "kici:os:linux",
            "kici:arch:x64",
            "kici:role:builder",
        ],
        Duration::from_millis(1),
    )
    .expect("agent online");
    let pid = std::process::id();
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let mut delivery = 0;
    let mut push = |ws: &mut Socket| {
        delivery += 1;
        let t0 = Instant::now();
        post_webhook(&webhook, &format!("cachebench-{pid}-{delivery}"));
        let job = first_step(ws, install);
        (job, t0.elapsed().as_secs_f64() * 1000.0)
    };
    for round in 0..rounds {
        write_lock(
            &lock,
            &format!("c{pid}x{round}"),
            &format!("l{pid}x{round}"),
        );
        let (job, ms) = push(&mut ws);
        cold.push(ms);
        finish(&mut ws, &job);
        let (job, ms) = push(&mut ws);
        warm.push(ms);
        finish(&mut ws, &job);
    }
    // Workflow-cache requests on one held job (a warm run's).
    let (job, _) = push(&mut ws);
    let (saved, _) = ask(
        &mut ws,
        &job,
        json!({"type": "cache.user.save.request", "key": "bench-deps-v1"}),
        "cache.user.save.response",
    );
    if let Some(url) = saved["uploadUrl"].as_str() {
        http(Verb::Put, url, &[1u8; 4096]);
        send(
            &mut ws,
            json!({"type": "cache.user.save.complete", "messageId": "c", "jobId": job["jobId"],
                   "key": "bench-deps-v1", "tarHash": "ab", "sizeBytes": 4096}),
        );
    }
    let (mut save, mut exact, mut prefix) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        // Three requests per 40 ms: under the link's pace of 100 messages/s (docs/agent-protocol.md,
        // "Limits"), so what is timed is the answer, not the pacing a flooding agent gets.
        std::thread::sleep(Duration::from_millis(40));
        let (_, ms) = ask(
            &mut ws,
            &job,
            json!({"type": "cache.user.save.request", "key": format!("bench-new-{i}")}),
            "cache.user.save.response",
        );
        save.push(ms);
        let (hit, ms) = ask(
            &mut ws,
            &job,
            json!({"type": "cache.user.restore.request", "key": "bench-deps-v1"}),
            "cache.user.restore.response",
        );
        assert_eq!(hit["hit"], true, "{hit}");
        exact.push(ms);
        let (hit, ms) = ask(
            &mut ws,
            &job,
            json!({"type": "cache.user.restore.request", "key": "bench-deps-v2",
                   "restoreKeys": ["bench-deps-"]}),
            "cache.user.restore.response",
        );
        assert_eq!(hit["hit"], true, "{hit}");
        prefix.push(ms);
    }
    finish(&mut ws, &job);
    let (save50, save99) = stats(save);
    let (exact50, exact99) = stats(exact);
    let (prefix50, prefix99) = stats(prefix);
    println!(
        "{}",
        json!({"cold_ms": cold, "warm_ms": warm, "install_ms": install.as_millis() as u64,
               "save_p50_ms": save50, "save_p99_ms": save99,
               "restore_p50_ms": exact50, "restore_p99_ms": exact99,
               "prefix_p50_ms": prefix50, "prefix_p99_ms": prefix99, "count": count})
    );
}
