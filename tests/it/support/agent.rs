//! A scripted agent: the agent side of docs/agent-protocol.md over a real WebSocket (tungstenite
//! client), sending what the real KiCI agent sends and recording what it gets.

use std::{
    net::{SocketAddr, TcpStream},
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

use super::{
    daemon::{base_env, Daemon},
    pg::PgCluster,
    webhook::admin,
};

const T: Duration = Duration::from_secs(10);

pub struct TestAgent {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    pub id: String,
    /// The close code the orchestrator sent, once it did.
    pub closed: Option<u16>,
    /// Text frames received and not yet consumed by `recv_type`.
    backlog: Vec<Value>,
}

pub const LABELS: [&str; 6] = [
    "linux",
    "kici:os:linux",
    "kici:arch:x64",
    "kici:host:vm",
    "kici:role:builder",
    "kici:role:init-runner",
];

impl TestAgent {
    pub fn connect(addr: SocketAddr, id: &str) -> TestAgent {
        let url = format!("ws://{addr}/ws");
        let (ws, _) = tungstenite::connect(url.as_str()).expect("WebSocket connect to /ws");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        TestAgent {
            ws,
            id: id.to_owned(),
            closed: None,
            backlog: Vec::new(),
        }
    }

    pub fn send(&mut self, frame: Value) {
        let _ = self.ws.send(Message::text(frame.to_string()));
    }

    /// A fresh text frame from the socket within `within`, or `None` (timeout, or closed: see
    /// `closed`).
    fn read_frame(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && self.closed.is_none() {
            match self.ws.read() {
                Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
                Ok(Message::Close(f)) => self.closed = Some(f.map_or(1005, |f| u16::from(f.code))),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => self.closed = Some(self.closed.unwrap_or(1006)),
            }
        }
        None
    }

    /// The next text frame (kept ones first).
    pub fn recv(&mut self, within: Duration) -> Option<Value> {
        if !self.backlog.is_empty() {
            return Some(self.backlog.remove(0));
        }
        self.read_frame(within)
    }

    /// The next frame of `kind`; others are kept for later.
    pub fn recv_type(&mut self, kind: &str, within: Duration) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(|f| f["type"] == kind) {
            return Some(self.backlog.remove(i));
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left) {
                Some(f) if f["type"] == kind => return Some(f),
                Some(f) => self.backlog.push(f),
                None => {}
            }
        }
        None
    }

    /// Waits for the orchestrator to close the connection; returns its close code.
    pub fn wait_closed(&mut self, within: Duration) -> Option<u16> {
        let deadline = Instant::now() + within;
        while self.closed.is_none() && Instant::now() < deadline {
            if let Some(f) = self.read_frame(Duration::from_millis(100)) {
                self.backlog.push(f);
            }
        }
        self.closed
    }

    /// Drops the connection without a close frame (as a killed agent does).
    pub fn vanish(self) {
        if let MaybeTlsStream::Plain(s) = self.ws.get_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn auth(&mut self, token: &str) -> Value {
        self.send(json!({"type": "auth.request", "token": token, "protocolVersion": 1}));
        self.recv(Duration::from_secs(5)).unwrap_or(Value::Null)
    }

    /// `agent.register` as the real agent sends it; returns the `register.ack`.
    pub fn register(&mut self, labels: &[&str], in_flight: &[(&str, &str)]) -> Option<Value> {
        let mut frame = json!({
            "type": "agent.register", "messageId": format!("register-{}-1", self.id), "agentId": self.id,
            "labels": labels, "platform": "linux", "arch": "x64", "hostname": "vm", "version": "0.1.24",
            "runningAsUser": "ci", "runningAsUid": 1000,
        });
        if !in_flight.is_empty() {
            frame["inFlightJobs"] = json!(in_flight
                .iter()
                .map(|(j, r)| json!({"jobId": j, "runId": r}))
                .collect::<Vec<_>>());
        }
        self.send(frame);
        let ack = self.recv_type("register.ack", Duration::from_secs(5));
        if ack.is_some() {
            self.send(json!({"type": "config.ack", "messageId": "config-ack", "agentId": self.id}));
        }
        ack
    }

    /// Connect, authenticate and register with the default labels.
    pub fn online(addr: SocketAddr, id: &str, token: &str) -> TestAgent {
        let mut a = TestAgent::connect(addr, id);
        assert_eq!(a.auth(token)["type"], "auth.success");
        assert!(a.register(&LABELS, &[]).is_some(), "no register.ack");
        a
    }

    pub fn dispatch(&mut self, within: Duration) -> Option<Value> {
        self.recv_type("job.dispatch", within)
    }

    fn job_frame(&self, kind: &str, job: &Value) -> Value {
        json!({"type": kind, "messageId": kici_orchestrator::crypto::random_uuid(),
               "runId": job["runId"], "jobId": job["jobId"], "timestamp": jiff::Timestamp::now().as_millisecond()})
    }

    pub fn ack(&mut self, job: &Value) {
        let f = self.job_frame("job.ack", job);
        self.send(f);
    }

    pub fn status(&mut self, job: &Value, state: &str, data: Value) {
        let mut f = self.job_frame("job.status", job);
        f["state"] = json!(state);
        if !data.is_null() {
            f["data"] = data;
        }
        self.send(f);
    }

    pub fn step(&mut self, job: &Value, index: i64, name: &str, state: &str, data: Value) {
        let mut f = self.job_frame("step.status", job);
        f["stepIndex"] = json!(index);
        f["stepName"] = json!(name);
        f["state"] = json!(state);
        if !data.is_null() {
            f["data"] = data;
        }
        self.send(f);
    }

    pub fn log(&mut self, job: &Value, index: i64, lines: &[&str]) {
        let mut f = self.job_frame("log.chunk", job);
        f["stepIndex"] = json!(index);
        f["lines"] = json!(lines);
        self.send(f);
    }

    /// What the real agent does for a job: ack, running, context, one step with logs, the end.
    pub fn run_job(&mut self, job: &Value, outcome: &str) {
        self.ack(job);
        self.status(job, "running", Value::Null);
        self.send(json!({"type": "job.context", "runId": job["runId"], "jobId": job["jobId"], "context": {"sandboxType": "bare-metal"}}));
        self.send(json!({"type": "run.event", "runId": job["runId"], "eventType": "agent.execution.start", "timestampMs": 1, "sourceService": "agent", "jobId": job["jobId"], "durationMs": null}));
        self.log(job, -1, &["[workflow-runner] Cloning"]);
        self.step(job, 0, "hello", "running", Value::Null);
        self.log(job, 0, &["hello from kici", "second line"]);
        if outcome == "success" {
            self.step(job, 0, "hello", "success", json!({"durationMs": 12}));
            self.status(job, "success", json!({"durationMs": 40, "stepResults": [{"name": "hello", "status": "success", "durationMs": 12}]}));
        } else {
            let error = json!({"message": "to stderr\n    exit code: 3", "exitCode": 3});
            self.step(
                job,
                0,
                "hello",
                "failed",
                json!({"durationMs": 5, "error": error}),
            );
            self.status(job, "failed", json!({"durationMs": 30, "stepResults": [{"name": "hello", "status": "failed", "durationMs": 5, "error": "exit code: 3"}]}));
        }
        self.send(
            json!({"type": "agent.status", "messageId": "s", "agentId": self.id, "activeJobs": 0}),
        );
    }
}

pub const OWNER: &str = "6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d";

pub struct Setup {
    pub d: Daemon,
    pub db: String,
    pub logs: std::path::PathBuf,
}

pub fn setup(pg: &PgCluster, extra: &[(&str, &str)]) -> Setup {
    let db = pg.create_database();
    let (mut env, logs) = agent_env(&db, "agent");
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    Setup { d, db, logs }
}

/// The daemon environment of [`setup`] for database `db`: admin token [`OWNER`], job logs in
/// a fresh directory named after `label` (returned too), no cache build jobs.
pub fn agent_env(db: &str, label: &str) -> (Vec<(String, String)>, std::path::PathBuf) {
    let logs = std::env::temp_dir().join(format!(
        "kici-{label}-logs-{}-{}",
        std::process::id(),
        db.rsplit('/').next().unwrap()
    ));
    let mut env = base_env(db);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    env.push(("KICI_STORAGE_FS_PATH".into(), logs.display().to_string()));
    // These tests queue their jobs as they are; tests/it/caches.rs covers the build job.
    env.push(("KICI_CACHE_BUILD_JOBS".into(), "false".into()));
    (env, logs)
}

pub fn agent_token(s: &Setup, body: Value) -> String {
    let r = admin(&s.d, OWNER, "POST", "/agent-tokens", body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["token"].as_str().unwrap().to_owned()
}

pub fn dispatch_body(name: &str) -> Value {
    json!({
        "repoUrl": "file:///srv/repos/acme/basic", "ref": "main", "sha": "0123456789abcdef0123456789abcdef01234567",
        "lockFileUrl": "",
        "jobConfig": {"workflowName": "basic", "name": name, "baseJobName": name, "contentHash": "abc",
                      "source": {"file": ".kici/workflows/basic.ts", "export": "#default"},
                      "event": {"type": "push", "targetBranch": "main", "payload": {}}},
    })
}

/// Queues a run with these jobs (all runnable now); returns (run id, job ids).
pub fn queue_run(db: &str, names: &[&str], labels: &[&str]) -> (String, Vec<String>) {
    let mut client = postgres::Client::connect(db, postgres::NoTls).unwrap();
    let run_id = kici_orchestrator::crypto::random_uuid();
    let jobs: Vec<NewJob> = names
        .iter()
        .map(|n| NewJob {
            id: kici_orchestrator::crypto::random_uuid(),
            run_id: run_id.clone(),
            workflow_name: "basic".into(),
            job_name: (*n).into(),
            dispatch: dispatch_body(n),
            requirements: Requirements {
                labels: labels.iter().map(|l| l.to_string()).collect(),
                ..Requirements::default()
            },
            routing_key: None,
        })
        .collect();
    let ids = jobs.iter().map(|j| j.id.clone()).collect();
    create_basic_run(&mut client, &run_id, jobs);
    (run_id, ids)
}

/// Records run `run_id` of workflow `basic` (acme/basic, main) with these jobs, all runnable.
fn create_basic_run(client: &mut postgres::Client, run_id: &str, jobs: Vec<NewJob>) {
    let run = NewRun {
        run_id: run_id.to_owned(),
        workflow_name: "basic".into(),
        provider: Some("local".into()),
        routing_key: None,
        repo: Some("acme/basic".into()),
        git_ref: Some("main".into()),
        sha: None,
        delivery_id: None,
        trigger_event: Some("push".into()),
        trigger_decision: None,
        jobs,
        waiting: Vec::new(),
        needs: Vec::new(),
    };
    create_run(client, &run).unwrap();
}

pub fn one(pg: &PgCluster, db: &str, sql: &str) -> String {
    pg.psql(db, sql).trim().to_owned()
}

pub fn wait_value(pg: &PgCluster, db: &str, sql: &str, want: &str) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let got = one(pg, db, sql);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql}: {got:?}, wanted {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Queues one job whose dispatch carries these cache hashes; returns (run id, job id).
pub fn queue_job(
    db: &str,
    name: &str,
    content_hash: &str,
    lockfile_hash: &str,
) -> (String, String) {
    let mut client = postgres::Client::connect(db, postgres::NoTls).unwrap();
    let run_id = kici_orchestrator::crypto::random_uuid();
    let mut dispatch = dispatch_body(name);
    dispatch["jobConfig"]["contentHash"] = json!(content_hash);
    dispatch["jobConfig"]["lockfileHash"] = json!(lockfile_hash);
    // Only a build job may write source and deps tarballs (src/agent/cache_keys.rs).
    dispatch["jobConfig"]["buildOnly"] = json!(true);
    let job = NewJob {
        id: kici_orchestrator::crypto::random_uuid(),
        run_id: run_id.clone(),
        workflow_name: "basic".into(),
        job_name: name.into(),
        dispatch,
        requirements: Requirements::default(),
        routing_key: None,
    };
    let job_id = job.id.clone();
    create_basic_run(&mut client, &run_id, vec![job]);
    (run_id, job_id)
}

/// An agent that took a job and reported it running.
pub fn running(s: &Setup, id: &str, token: &str) -> (TestAgent, Value) {
    let mut a = TestAgent::online(s.d.addr, id, token);
    let job = a.dispatch(T).expect("a job dispatched");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    (a, job)
}

pub fn token_id(s: &Setup, token: &str) -> String {
    let listed = admin(&s.d, OWNER, "GET", "/agent-tokens", json!({})).json();
    listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["prefix"] == token[..12])
        .and_then(|t| t["id"].as_str())
        .expect("the token is listed")
        .to_owned()
}
