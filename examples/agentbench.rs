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
//! `idle`: N agents connect, register and heartbeat for the duration; prints how many stayed
//! connected and were registered: `{"agents":..,"registered":..,"still_open":..}`.
//! Bounded: every wait has a timeout; the process ends within the duration plus a minute.

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
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

#[path = "common/mod.rs"]
mod common;
use common::{arg, read};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn wait_for(ws: &mut Socket, kind: &str, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(f) = read(ws) {
            if f["type"] == kind {
                return Some(f);
            }
        }
    }
    None
}

/// Connects, authenticates and registers; `None` when anything is refused or times out.
fn online(url: &str, token: &str, id: &str, tick: Duration) -> Option<Socket> {
    let (mut ws, _) = tungstenite::connect(url).ok()?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(tick)).ok()?;
    }
    ws.send(Message::text(
        json!({"type":"auth.request","token":token,"protocolVersion":1}).to_string(),
    ))
    .ok()?;
    wait_for(&mut ws, "auth.success", Duration::from_secs(10))?;
    let register = json!({"type":"agent.register","messageId":format!("register-{id}"),"agentId":id,
        "labels":["linux","kici:os:linux","kici:arch:x64"],"platform":"linux","arch":"x64"});
    ws.send(Message::text(register.to_string())).ok()?;
    wait_for(&mut ws, "register.ack", Duration::from_secs(10))?;
    Some(ws)
}

fn latency(args: &[String]) {
    let url = arg(args, "--ws", None);
    let token = arg(args, "--token", None);
    let db = arg(args, "--db", None);
    let count: usize = arg(args, "--count", Some("300")).parse().expect("--count");
    let mut ws =
        online(&url, &token, "bench-agent", Duration::from_millis(1)).expect("agent online");
    let mut client = postgres::Client::connect(&db, postgres::NoTls).expect("database");
    let webhook = args
        .iter()
        .position(|a| a == "--webhook")
        .and_then(|i| args.get(i + 1).cloned());
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + 20 {
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
                job_name: "j".into(),
                dispatch: json!({"repoUrl":"file:///x","ref":"main","sha":"0","jobConfig":{"workflowName":"bench","name":"j"}}),
                requirements: Requirements::default(),
                routing_key: None,
            }],
            waiting: Vec::new(),
            needs: Vec::new(),
        };
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
        let (run_id, job_id) = (
            dispatch["runId"].as_str().unwrap_or_default().to_owned(),
            dispatch["jobId"].as_str().unwrap_or_default().to_owned(),
        );
        if i >= 20 {
            samples.push(ms);
        }
        for state in ["running", "success"] {
            let f = json!({"type":"job.status","messageId":"m","runId":run_id,"jobId":job_id,"state":state,"timestamp":1});
            ws.send(Message::text(f.to_string())).unwrap();
        }
        // Let the orchestrator finish the job so the agent is idle again.
        thread::sleep(Duration::from_millis(20));
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{}",
        json!({"count": samples.len(), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)})
    );
}

/// POSTs a local-source push (`X-Event-Type: push`) and checks the 202.
fn post_webhook(url: &str, delivery: &str) {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .expect("--webhook must be http://");
    let (host, path) = rest.split_once('/').expect("--webhook needs a path");
    let body = r#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567","repository":{"full_name":"bench/app"}}"#;
    let mut s = TcpStream::connect(host).expect("connect to the orchestrator");
    write!(s, "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Event-Type: push\r\nX-Request-ID: {delivery}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 202"),
        "webhook not accepted: {answer}"
    );
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
                    let Some(mut ws) = online(&url, &token, &format!("idle-{i:04}"), Duration::from_millis(500)) else {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("latency") => latency(&args),
        Some("idle") => idle(&args),
        _ => {
            eprintln!("usage: agentbench latency|idle … (see the file's header)");
            std::process::exit(2);
        }
    }
}
