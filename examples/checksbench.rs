//! GitHub check-run reporting load for `scripts/bench.sh checks` (a cargo example, not shipped).
//!
//! ```text
//! checksbench --fake-port P --api http://127.0.0.1:D --admin-token T --ws ws://127.0.0.1:D/ws
//!             --token kat_… --db postgresql://… [--runs 200] [--agents 4]
//! ```
//!
//! Starts a fake GitHub on 127.0.0.1:P (the daemon runs with `KICI_GITHUB_API_URL` pointing at
//! it): `GET /app`, installation tokens and the Checks API (create, update), mirroring the
//! integration tests' fake (`tests/it/support/fake_checks.rs`) without its JWT signature check.
//! Adds a GitHub App source (`openssl` makes its key), commits `--runs` runs of one job each
//! from this process (as a planner would), and `--agents` scripted agents run the jobs as fast as
//! they come (ack, running, one step, success). Measures the reports the fake accepted per second
//! (create and update calls, first to last) and, per job, the delay from the agent's terminal
//! `job.status` to the fake's accepting that job's `completed` check run. Prints
//! `{"runs":..,"reports":..,"reports_per_s":..,"p50_ms":..,"p99_ms":..,"max_ms":..,"missing":..}`.
//! Bounded: every wait has a timeout; the process ends within two minutes.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use kici_orchestrator::http::{
    server::{Handler, Limits, Server},
    Request, Response,
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
use common::{arg, online, wait_for};

const APP_ID: i64 = 4242;
const INSTALLATION: u64 = 77;
const TOKEN: &str = "ghs_checksbench";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Default)]
struct Seen {
    reports: usize,
    first: Option<Instant>,
    last: Option<Instant>,
    next_id: i64,
    /// Check run id → (external id, name).
    runs: HashMap<i64, (String, String)>,
    /// (run id, check name) → when it was accepted as completed.
    completed: HashMap<(String, String), Instant>,
}

struct Fake(Mutex<Seen>);

impl Handler for Fake {
    fn handle(&self, req: &Request) -> Response {
        let auth = req.header("authorization").unwrap_or("");
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", ["app"]) if auth.starts_with("Bearer ") => Response::json(
                200,
                &json!({"id": APP_ID, "name": "Checks Bench", "slug": "checks-bench"}),
            ),
            ("POST", ["app", "installations", _, "access_tokens"])
                if auth.starts_with("Bearer ") && auth.split('.').count() == 3 =>
            {
                let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
                Response::json(
                    201,
                    &json!({"token": TOKEN, "expires_at": expires.to_string()}),
                )
            }
            (m @ ("POST" | "PATCH"), ["repos", _, _, "check-runs", ..])
                if auth == format!("token {TOKEN}") =>
            {
                let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                let now = Instant::now();
                let mut s = self.0.lock().unwrap();
                s.reports += 1;
                s.first.get_or_insert(now);
                s.last = Some(now);
                let id = if m == "POST" {
                    s.next_id += 1;
                    let id = s.next_id;
                    let key = (
                        body["external_id"].as_str().unwrap_or("").to_owned(),
                        body["name"].as_str().unwrap_or("").to_owned(),
                    );
                    s.runs.insert(id, key);
                    id
                } else {
                    parts[4].parse().unwrap_or(0)
                };
                if body["status"] == "completed" {
                    if let Some(key) = s.runs.get(&id).cloned() {
                        s.completed.entry(key).or_insert(now);
                    }
                }
                Response::json(if m == "POST" { 201 } else { 200 }, &json!({"id": id}))
            }
            _ => Response::json(404, &json!({"message": "Not Found"})),
        }
    }
}

fn admin_post(api: &str, token: &str, path: &str, body: &Value) -> String {
    let host = api.strip_prefix("http://").expect("--api must be http://");
    let body = body.to_string();
    let mut s = TcpStream::connect(host).expect("connect to the orchestrator");
    write!(s, "POST /api/v1/admin{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

fn app_key() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "openssl genrsa failed");
    String::from_utf8(out.stdout).expect("PEM text")
}

fn one_job_run(routing_key: &str) -> NewRun {
    let run_id = kici_orchestrator::crypto::random_uuid();
    let dispatch = json!({"repoUrl":"https://github.example/bench/app.git","ref":"main","sha":SHA,
        "jobConfig":{"workflowName":"ci","name":"build"},
        "credentials":{"provider":"github","routingKey":routing_key,"appId":APP_ID.to_string(),
                       "installationId":INSTALLATION,"repository":"bench/app",
                       "permissions":{"contents":"read"},"forkPullRequest":false}});
    let job = NewJob {
        id: kici_orchestrator::crypto::random_uuid(),
        run_id: run_id.clone(),
        workflow_name: "ci".into(),
        job_name: "build".into(),
        dispatch,
        requirements: Requirements {
            labels: vec!["linux".into()],
            ..Requirements::default()
        },
        routing_key: Some(routing_key.to_owned()),
    };
    NewRun {
        run_id,
        workflow_name: "ci".into(),
        provider: Some("github".into()),
        routing_key: Some(routing_key.to_owned()),
        repo: Some("bench/app".into()),
        git_ref: Some("main".into()),
        sha: Some(SHA.into()),
        delivery_id: None,
        trigger_event: Some("push".into()),
        trigger_decision: None,
        jobs: vec![job],
        waiting: Vec::new(),
        needs: Vec::new(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = arg(&args, "--fake-port", None)
        .parse()
        .expect("--fake-port");
    let api = arg(&args, "--api", None);
    let admin_token = arg(&args, "--admin-token", None);
    let ws_url = arg(&args, "--ws", None);
    let agent_token = arg(&args, "--token", None);
    let db = arg(&args, "--db", None);
    let runs: usize = arg(&args, "--runs", Some("200")).parse().expect("--runs");
    let agents: usize = arg(&args, "--agents", Some("4")).parse().expect("--agents");

    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], port)), Limits::default())
        .expect("bind the fake GitHub");
    let fake = Arc::new(Fake(Mutex::default()));
    let handler: Arc<dyn Handler> = fake.clone();
    thread::spawn(move || server.run(handler));

    let source = json!({"provider":"github","name":"bench","appId":APP_ID.to_string(),
                        "privateKey":app_key(),"webhookSecret":"bench secret"});
    let answer = admin_post(&api, &admin_token, "/sources", &source);
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "source not added: {answer}"
    );
    let routing_key = format!("github:{APP_ID}");

    // Agents: run every job they are sent; note when each job's end was sent.
    let ended: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_secs(90);
    for i in 0..agents {
        let (ws_url, agent_token, ended) = (ws_url.clone(), agent_token.clone(), ended.clone());
        thread::spawn(move || {
            let mut ws = online(
                &ws_url,
                &agent_token,
                &format!("checks-bench-{i}"),
                &["linux"],
                Duration::from_millis(5),
            )
            .expect("agent online");
            while Instant::now() < stop_at {
                let Some(job) = wait_for(&mut ws, "job.dispatch", Duration::from_millis(200))
                else {
                    continue;
                };
                let frame = |kind: &str, extra: Value| {
                    let mut f = json!({"type":kind,"messageId":kici_orchestrator::crypto::random_uuid(),
                            "runId":job["runId"],"jobId":job["jobId"],"timestamp":jiff::Timestamp::now().as_millisecond()});
                    for (k, v) in extra.as_object().unwrap() {
                        f[k] = v.clone();
                    }
                    Message::text(f.to_string())
                };
                ws.send(frame("job.ack", json!({}))).unwrap();
                ws.send(frame("job.status", json!({"state":"running"})))
                    .unwrap();
                ws.send(frame(
                    "step.status",
                    json!({"stepIndex":0,"stepName":"make","state":"running"}),
                ))
                .unwrap();
                ws.send(frame("step.status", json!({"stepIndex":0,"stepName":"make","state":"success","data":{"durationMs":1}}))).unwrap();
                let run_id = job["runId"].as_str().unwrap_or_default().to_owned();
                ended.lock().unwrap().insert(run_id, Instant::now());
                ws.send(frame("job.status", json!({"state":"success","data":{"durationMs":2,"stepResults":[{"name":"make","status":"success"}]}}))).unwrap();
            }
        });
    }

    let mut client = postgres::Client::connect(&db, postgres::NoTls).expect("database");
    let mut ids = Vec::with_capacity(runs);
    for _ in 0..runs {
        let run = one_job_run(&routing_key);
        ids.push(run.run_id.clone());
        create_run(&mut client, &run).expect("queue a run");
    }
    let deadline = Instant::now() + Duration::from_secs(80);
    let job_check = "kici/ci/job/build".to_owned();
    let run_check = "kici/ci".to_owned();
    loop {
        let done = {
            let s = fake.0.lock().unwrap();
            ids.iter()
                .filter(|id| {
                    s.completed
                        .contains_key(&((*id).clone(), run_check.clone()))
                })
                .count()
        };
        if done == runs || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let s = fake.0.lock().unwrap();
    let ended = ended.lock().unwrap();
    let mut delays: Vec<f64> = ids
        .iter()
        .filter_map(|id| {
            let end = ended.get(id)?;
            let done = s.completed.get(&(id.clone(), job_check.clone()))?;
            Some(done.saturating_duration_since(*end).as_secs_f64() * 1000.0)
        })
        .collect();
    delays.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        delays
            .get(((delays.len() as f64 * p) as usize).min(delays.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let span = match (s.first, s.last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(0.001),
        _ => f64::NAN,
    };
    println!(
        "{}",
        json!({"runs": runs, "reports": s.reports, "reports_per_s": s.reports as f64 / span,
               "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0), "missing": runs - delays.len()})
    );
    // The agents' threads end with the process.
    std::process::exit(0);
}
