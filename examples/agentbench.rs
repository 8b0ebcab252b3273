//! Agent-link load for `scripts/bench.sh dispatch` (a cargo example, not shipped).
//!
//! ```text
//! agentbench latency --ws ws://127.0.0.1:P/ws --token kat_… --db postgresql://… [--count 300]
//! [--webhook URL] agentbench idle --ws ws://127.0.0.1:P/ws --token kat_… [--agents 1000]
//! [--seconds 60] [--heartbeat-ms 30000]
//! ```
//!
//! `latency`: one idle registered agent; a run with one job is committed from this process
//! (as another orchestrator would) — or, with `--webhook <url>`, a local-source push is posted
//! to the orchestrator, whose pipeline reads the lock file and queues the job — and the time
//! until the agent holds the `job.dispatch` is measured; the agent then finishes the job. Prints
//! `{"count":..,"p50_ms":..,"p99_ms":..,"max_ms":..}`.
//! With `--environments a,b,c` every other job declares those environments (the two kinds
//! alternate, `count` of each) and `--expect-secrets N` checks that each of those
//! `job.dispatch`es carries N secrets; the output then also has `"secrets": {…}` for them; `agentbench seed-secrets --db … --key HEX`
//! first stores them (org `__default__`, the org of a job without a source): environments
//! `bench-a`, `bench-b`, `bench-c`, each bound to its scope of 5 secrets, plus 5 org-wide: 20.
//! `idle`: N agents connect, register and heartbeat for the duration; prints how many stayed
//! connected and were registered: `{"agents":..,"registered":..,"still_open":..}`.
//! `logs` (`agentbench logs --ws … --token … --db … --api http://127.0.0.1:P --admin-token …
//! [--agents 8] [--seconds 10] [--batch 200] [--rate LINES_PER_S_PER_AGENT, 0 = unpaced]`): N
//! agents each run one job (committed from this process) and stream `log.chunk`s of `--batch` lines
//! for the duration; the first line of every chunk carries its send time. A reader polls `GET
//! /api/v1/admin/runs/<run>/logs` for the first agent's run and times each marked line from send to
//! readable. When the agents stop, the lines are counted in `execution_log_lines` until all are
//! there. Prints `{"lines":..,
//! "lines_per_s":..,"commits_per_s":..,"p50_ms":..,"p99_ms":..,"samples":..}`; commits are the
//! database's `xact_commit` delta over the same time. Bounded: every wait has a timeout; the
//! process ends within the duration plus a minute.

use std::{
    net::TcpStream,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use kici_orchestrator::runs::{
    requirements::Requirements,
    store::{
        queue::NewJob,
        runs::{create_run, NewRun},
    },
};
use serde_json::{json, Value};
use tungstenite::Message;

#[path = "common/mod.rs"]
mod common;
use common::{arg, online, post_webhook, read, wait_for};

/// The labels of every bench agent here.
const LABELS: &[&str] = &["linux", "kici:os:linux", "kici:arch:x64"];

fn latency(args: &[String]) {
    let url = arg(args, "--ws", None);
    let token = arg(args, "--token", None);
    let db = arg(args, "--db", None);
    let count: usize = arg(args, "--count", Some("300")).parse().expect("--count");
    let mut ws = online(
        &url,
        &token,
        "bench-agent",
        LABELS,
        Duration::from_millis(1),
    )
    .expect("agent online");
    let mut client = postgres::Client::connect(&db, postgres::NoTls).expect("database");
    let webhook = args
        .iter()
        .position(|a| a == "--webhook")
        .and_then(|i| args.get(i + 1).cloned());
    let environments: Vec<String> = args
        .iter()
        .position(|a| a == "--environments")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let expect_secrets: Option<usize> = args
        .iter()
        .position(|a| a == "--expect-secrets")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--expect-secrets"));
    let plain = json!({"repoUrl":"file:///x","ref":"main","sha":"0","jobConfig":{"workflowName":"bench","name":"j"}});
    let mut with_secrets = plain.clone();
    with_secrets[kici_orchestrator::secrets::dispatch::REQUEST_KEY] =
        json!({ "environments": environments });
    // With --environments, plain jobs and jobs declaring them alternate, so both series see
    // the same machine at the same time.
    let alternate = !environments.is_empty();
    let mut samples = Vec::with_capacity(count);
    let mut secret_samples = Vec::with_capacity(count);
    for i in 0..2 * count + 40 {
        if !alternate && i >= count + 20 {
            break;
        }
        let secrets_job = alternate && i % 2 == 1;
        let body = if secrets_job { &with_secrets } else { &plain };
        let (_, job_id, run) = one_job_run("j", body.clone());
        let t0 = Instant::now();
        match &webhook {
            Some(url) => post_webhook(url, &format!("bench-{}-{i}", std::process::id())),
            None => {
                create_run(&mut client, &run).expect("queue a run");
            }
        }
        let dispatch = wait_for(&mut ws, "job.dispatch", Duration::from_secs(10))
            .expect("job.dispatch within 10 s");
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if webhook.is_none() {
            assert_eq!(dispatch["jobId"], job_id.as_str());
        }
        let got = dispatch["secrets"].as_object().map_or(0, |m| m.len());
        if let (Some(n), true) = (expect_secrets, secrets_job) {
            assert_eq!(got, n, "secrets in job.dispatch");
        }
        let (run_id, job_id) = (
            dispatch["runId"].as_str().unwrap_or_default().to_owned(),
            dispatch["jobId"].as_str().unwrap_or_default().to_owned(),
        );
        if i >= if alternate { 40 } else { 20 } {
            if secrets_job {
                secret_samples.push(ms);
            } else {
                samples.push(ms);
            }
        }
        for state in ["running", "success"] {
            let f = json!({"type":"job.status","messageId":"m","runId":run_id,"jobId":job_id,"state":state,"timestamp":1});
            ws.send(Message::text(f.to_string())).unwrap();
        }
        // Let the orchestrator finish the job so the agent is idle again.
        thread::sleep(Duration::from_millis(20));
    }
    let summary = |mut samples: Vec<f64>| {
        samples.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        json!({"count": samples.len(), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)})
    };
    let mut out = summary(samples);
    if alternate {
        out["secrets"] = summary(secret_samples);
    }
    println!("{out}");
}

fn idle(args: &[String]) {
    let url = arg(args, "--ws", None);
    let token = arg(args, "--token", None);
    let agents: usize = arg(args, "--agents", Some("1000"))
        .parse()
        .expect("--agents");
    let seconds: u64 = arg(args, "--seconds", Some("60"))
        .parse()
        .expect("--seconds");
    let beat = Duration::from_millis(
        arg(args, "--heartbeat-ms", Some("30000"))
            .parse()
            .expect("--heartbeat-ms"),
    );
    let registered = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..agents)
        .map(|i| {
            let (url, token, registered, open) = (url.clone(), token.clone(), registered.clone(), open.clone());
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let Some(mut ws) = online(&url, &token, &format!("idle-{i:04}"), LABELS, Duration::from_millis(500)) else {
                        return;
                    };
                    registered.fetch_add(1, Ordering::SeqCst);
                    let mut next = Instant::now();
                    let mut alive = true;
                    while Instant::now() < end && alive {
                        if Instant::now() >= next {
                            let hb = json!({"type":"heartbeat","timestamp":jiff::Timestamp::now().as_millisecond()});
                            alive = ws.send(Message::text(hb.to_string())).is_ok();
                            next += beat;
                        }
                        match ws.read() {
                            Ok(Message::Close(_)) => alive = false,
                            Err(tungstenite::Error::Io(e))
                                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                            Err(_) => alive = false,
                            Ok(_) => {}
                        }
                    }
                    if alive {
                        open.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .expect("spawn an agent thread")
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    println!(
        "{}",
        json!({"agents": agents, "registered": registered.load(Ordering::SeqCst), "still_open": open.load(Ordering::SeqCst),
               "seconds": start.elapsed().as_secs_f64()})
    );
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn frame(kind: &str, job: &Value) -> Value {
    json!({"type": kind, "messageId": kici_orchestrator::crypto::random_uuid(),
           "runId": job["runId"], "jobId": job["jobId"], "timestamp": jiff::Timestamp::now().as_millisecond()})
}

/// One admin GET over a fresh connection; the body as JSON (`Connection: close`, bounded by a
/// 5 s read timeout).
fn admin_get(api: &str, token: &str, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let host = api.strip_prefix("http://")?.trim_end_matches('/');
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    s.take(64 * 1024 * 1024).read_to_end(&mut answer).ok()?;
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    serde_json::from_slice(&answer[at + 4..]).ok()
}

/// Polls a run's log from the start until `stop`; each line carrying ` t=<micros>` is a sample
/// of send-to-readable time in ms (at most 200 000 kept).
fn read_latencies(api: String, token: String, run: String, stop: Arc<AtomicUsize>) -> Vec<f64> {
    let mut samples = Vec::new();
    let mut cursor: Option<String> = None;
    let hard = Instant::now() + Duration::from_secs(240);
    while stop.load(Ordering::SeqCst) == 0 && Instant::now() < hard {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/runs/{run}/logs?limit=5000&after={c}"),
            None => format!("/api/v1/admin/runs/{run}/logs?limit=5000"),
        };
        let Some(page) = admin_get(&api, &token, &path) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        let at = now_micros();
        let lines = page["lines"].as_array().cloned().unwrap_or_default();
        for l in &lines {
            let text = l["line"].as_str().unwrap_or_default();
            if let Some(t) = text.rsplit(" t=").next().filter(|_| text.contains(" t=")) {
                if let Ok(sent) = t.parse::<u64>() {
                    if samples.len() < 200_000 {
                        samples.push(at.saturating_sub(sent) as f64 / 1000.0);
                    }
                }
            }
        }
        if let Some(c) = page["cursor"].as_str() {
            cursor = Some(c.to_owned());
        }
        if lines.is_empty() {
            thread::sleep(Duration::from_millis(20));
        }
    }
    samples
}

fn logs(args: &[String]) {
    let url = arg(args, "--ws", None);
    let token = arg(args, "--token", None);
    let db = arg(args, "--db", None);
    let api = arg(args, "--api", None);
    let admin = arg(args, "--admin-token", None);
    let agents: usize = arg(args, "--agents", Some("8")).parse().expect("--agents");
    let seconds: u64 = arg(args, "--seconds", Some("10"))
        .parse()
        .expect("--seconds");
    let batch: usize = arg(args, "--batch", Some("200")).parse().expect("--batch");
    // Lines per second per agent (0: as fast as the socket takes them).
    let rate: u64 = arg(args, "--rate", Some("0")).parse().expect("--rate");
    assert!(rate <= 1_000_000, "--rate must be 0..1000000");
    assert!((1..=64).contains(&agents), "--agents must be 1..64");
    assert!((1..=120).contains(&seconds), "--seconds must be 1..120");
    assert!((1..=1000).contains(&batch), "--batch must be 1..1000");
    let mut client = postgres::Client::connect(&db, postgres::NoTls).expect("database");
    let tag = format!("{}-{}", std::process::id(), now_micros());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..agents)
        .map(|i| {
            let (url, token, ready_tx) = (url.clone(), token.clone(), ready_tx.clone());
            let id = format!("logs-{tag}-{i}");
            thread::spawn(move || {
                let mut ws = online(&url, &token, &id, LABELS, Duration::from_millis(2))
                    .expect("agent online");
                ready_tx.send(()).expect("main waits");
                let job = wait_for(&mut ws, "job.dispatch", Duration::from_secs(30))
                    .expect("job.dispatch within 30 s");
                let mut send = |f: Value| ws.send(Message::text(f.to_string())).expect("send");
                send(frame("job.ack", &job));
                let mut running = frame("job.status", &job);
                running["state"] = json!("running");
                send(running);
                let mut step = frame("step.status", &job);
                step["stepIndex"] = json!(0);
                step["stepName"] = json!("stream");
                step["state"] = json!("running");
                send(step);
                let begun = Instant::now();
                let end = begun + Duration::from_secs(seconds);
                let mut sent = 0u64;
                let mut chunks = 0u64;
                while Instant::now() < end {
                    if rate > 0 {
                        let due = begun + Duration::from_secs_f64(sent as f64 / rate as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            thread::sleep(wait.min(Duration::from_secs(1)));
                        }
                    }
                    let mut lines: Vec<String> = Vec::with_capacity(batch);
                    for k in 0..batch {
                        lines.push(format!("a{i} {:09} bench log line", sent + k as u64));
                    }
                    lines[0].push_str(&format!(" t={}", now_micros()));
                    let mut f = frame("log.chunk", &job);
                    f["stepIndex"] = json!(0);
                    f["lines"] = json!(lines);
                    ws.send(Message::text(f.to_string())).expect("send a chunk");
                    sent += batch as u64;
                    chunks += 1;
                    if chunks.is_multiple_of(50) {
                        // Drain what the orchestrator sent (rate.limit.warning) so it never waits
                        // on us.
                        let _ = read(&mut ws);
                    }
                }
                (ws, job, sent)
            })
        })
        .collect();
    for _ in 0..agents {
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("every agent online within 30 s");
    }
    let xact = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
    };
    let commits_before = xact(&mut client);
    let t0 = Instant::now();
    let mut runs = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..agents {
        let name = format!("stream{i}");
        let (run_id, job_id, run) = one_job_run(
            &name,
            json!({"repoUrl":"file:///x","ref":"main","sha":"0","maxLogSizeBytes": 1u64 << 40,
                   "jobConfig":{"workflowName":"bench","name":name}}),
        );
        create_run(&mut client, &run).expect("queue a run");
        runs.push(run_id);
        jobs.push(job_id);
    }
    let stop = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (api, admin, run, stop) = (api.clone(), admin.clone(), runs[0].clone(), stop.clone());
        thread::spawn(move || read_latencies(api, admin, run, stop))
    };
    let ended: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("an agent thread"))
        .collect();
    let total: u64 = ended.iter().map(|(_, _, n)| n).sum();
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM execution_log_lines WHERE job_id::text = ANY($1)",
                &[&jobs],
            )
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n as u64 >= total || Instant::now() > drain_deadline {
            break n as u64;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = t0.elapsed().as_secs_f64();
    // Let the reader catch up with the last marked lines, then stop it.
    thread::sleep(Duration::from_millis(1500));
    stop.store(1, Ordering::SeqCst);
    let mut samples = reader.join().expect("the reader");
    // Statistics are flushed by the server every second or so.
    thread::sleep(Duration::from_millis(1100));
    let commits = xact(&mut client) - commits_before;
    for (mut ws, job, _) in ended {
        let mut step = frame("step.status", &job);
        step["stepIndex"] = json!(0);
        step["stepName"] = json!("stream");
        step["state"] = json!("success");
        step["data"] = json!({"durationMs": 1});
        let mut done = frame("job.status", &job);
        done["state"] = json!("success");
        done["data"] = json!({"durationMs": 1, "stepResults": []});
        let _ = ws.send(Message::text(step.to_string()));
        let _ = ws.send(Message::text(done.to_string()));
        let _ = ws.close(None);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        if samples.is_empty() {
            f64::NAN
        } else {
            samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
        }
    };
    println!(
        "{}",
        json!({"agents": agents, "seconds": seconds, "sent": total, "lines": stored, "elapsed_s": elapsed,
               "lines_per_s": stored as f64 / elapsed, "commits": commits, "commits_per_s": commits as f64 / elapsed,
               "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0), "samples": samples.len()})
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("latency") => latency(&args),
        Some("idle") => idle(&args),
        Some("logs") => logs(&args),
        Some("seed-secrets") => seed_secrets(&args),
        _ => {
            eprintln!("usage: agentbench latency|idle|logs … (see the file's header)");
            std::process::exit(2);
        }
    }
}

/// A run of workflow `bench` with one job, queued at once: `(run id, job id, run)`.
fn one_job_run(job_name: &str, dispatch: serde_json::Value) -> (String, String, NewRun) {
    let run_id = kici_orchestrator::crypto::random_uuid();
    let job_id = kici_orchestrator::crypto::random_uuid();
    let run = NewRun {
        run_id: run_id.clone(),
        workflow_name: "bench".into(),
        provider: None,
        routing_key: None,
        repo: None,
        git_ref: None,
        sha: None,
        delivery_id: None,
        trigger_event: None,
        trigger_decision: None,
        jobs: vec![NewJob {
            id: job_id.clone(),
            run_id: run_id.clone(),
            workflow_name: "bench".into(),
            job_name: job_name.to_owned(),
            dispatch,
            requirements: Requirements::default(),
            routing_key: None,
        }],
        waiting: Vec::new(),
        needs: Vec::new(),
    };
    (run_id, job_id, run)
}

/// Stores the secrets the `--environments bench-a,bench-b,bench-c` jobs resolve: 5 org-wide and
/// 5 per environment (each bound to its own scope), 20 keys; plus 2 variables per environment.
fn seed_secrets(args: &[String]) {
    use kici_orchestrator::{
        crypto::{SecretBox, SecretKey},
        secrets::store::{self, EnvironmentSpec},
    };
    let db = arg(args, "--db", None);
    let key = SecretKey::parse(&arg(args, "--key", None)).expect("--key: 64 hex digits");
    let sbox = SecretBox::new(key, None);
    let mut c = postgres::Client::connect(&db, postgres::NoTls).expect("database");
    let org = "__default__";
    for i in 0..5 {
        let value = format!("org-wide-{i}-{}", "v".repeat(40));
        store::put_secret(&mut c, &sbox, org, "__org__", &format!("ORG_{i}"), &value)
            .expect("store a secret");
    }
    for env in ["a", "b", "c"] {
        let name = format!("bench-{env}");
        let spec = EnvironmentSpec {
            name: name.clone(),
            ..EnvironmentSpec::default()
        };
        store::upsert_environment(&mut c, org, &spec, Some("agentbench")).expect("environment");
        let scope = format!("bench/{env}");
        store::bind(&mut c, org, &name, &scope, "**").expect("bind");
        for i in 0..5 {
            let key = format!("{}_{i}", env.to_uppercase());
            let value = format!("{scope}-{i}-{}", "v".repeat(40));
            store::put_secret(&mut c, &sbox, org, &scope, &key, &value).expect("store a secret");
        }
        for v in ["REGION", "TIER"] {
            store::set_variable(&mut c, org, &name, v, env, None).expect("variable");
        }
    }
}
