//! `GET /metrics` of a real daemon (hybrid mode, the Platform double, the scripted agent): the
//! exposition parses with the Python `prometheus_client` parser, its counters move as webhooks
//! arrive, a job runs and the Platform link drops, and no secret or delivery id appears in it;
//! the access rule over real sockets; and the log formats (`KICI_LOG_FORMAT=json`, text to a
//! file, journald detected from `JOURNAL_STREAM`).

use crate::support;

use std::{
    fs::File,
    io::Write,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::unix::fs::MetadataExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use support::{
    agent::{queue_run, wait_value, TestAgent},
    daemon::*,
    git::git_ok,
    pg::PgCluster,
    platform::PlatformDouble,
    webhook::*,
};

const OWNER: &str = "3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e";
const HOOK_SECRET: &str = "metrics-hook-secret-value";
const METRICS_TOKEN: &str = "metrics-scrape-token-0123456789";
const T: Duration = Duration::from_secs(10);

/// One sample as the Python parser read it.
struct Sample {
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// Parses an exposition with `prometheus_client.parser` (installed by scripts/test.sh); panics
/// with the parser's complaint when it is not valid.
fn parse(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for fam in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       out.append([s.name, s.labels, s.value, fam.type])\n\
        print(json.dumps(out))\n";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'prometheus_client'"),
        "the Python prometheus_client package is missing: pip install prometheus_client \
         (scripts/test.sh installs it)"
    );
    assert!(
        out.status.success(),
        "the exposition does not parse: {err}\n{text}"
    );
    let parsed: Vec<(String, serde_json::Map<String, Value>, f64, String)> =
        serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|(name, labels, value, _)| Sample {
            name,
            labels,
            value,
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k) == Some(&json!(v)))
        })
        .map(|s| s.value)
        .sum()
}

fn scrape(d: &Daemon) -> (String, Vec<Sample>) {
    let r = d.get("/metrics");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body).unwrap();
    let samples = parse(&text);
    (text, samples)
}

fn hybrid(pg: &PgCluster, platform: &PlatformDouble, extra: &[(&str, &str)]) -> (Daemon, String) {
    let db = pg.create_database();
    let mut env = platform.hybrid_env(&db, OWNER);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    (d, db)
}

/// Polls until `check` holds for a scrape (counters are counted just after the answer is sent).
fn until(d: &Daemon, what: &str, check: impl Fn(&[Sample]) -> bool) -> (String, Vec<Sample>) {
    let deadline = Instant::now() + T;
    loop {
        let (text, samples) = scrape(d);
        if check(&samples) {
            return (text, samples);
        }
        assert!(Instant::now() < deadline, "{what}; last scrape:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn counters_move_with_webhooks_a_job_and_the_platform_link() {
    let pg = PgCluster::shared();
    let platform = PlatformDouble::start(None);
    let (d, db) = hybrid(pg, &platform, &[]);
    platform.wait_for("source.register", T, |_| true);
    let (_, before) = scrape(&d);
    assert_eq!(value(&before, "kici_orch_jobs_completed_total", &[]), 0.0);
    assert_eq!(value(&before, "kici_orch_database_up", &[]), 1.0);
    assert_eq!(
        value(
            &before,
            "kici_orch_platform_link_state",
            &[("state", "connected")]
        ),
        1.0
    );
    assert_eq!(value(&before, "kici_orch_build_info", &[]), 1.0);
    assert!(value(&before, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&before, "process_open_fds", &[]) > 3.0);

    // Webhooks: accepted, duplicate, bad signature, unknown source.
    generic_source(
        &d,
        OWNER,
        "acme",
        json!({ "name": "hook", "verificationConfig": { "secret": HOOK_SECRET } }),
    );
    let body = br#"{"deploy":"now"}"#;
    let sig = format!("sha256={}", sign(HOOK_SECRET, body));
    let good = [
        ("Content-Type", "application/json"),
        ("X-Idempotency-Key", "metrics-delivery-key-7"),
        ("X-Signature-256", sig.as_str()),
    ];
    let path = "/webhook/acme/generic/hook";
    let first = post(&d, path, &good, body);
    assert_eq!(first.status, 202);
    let delivery_id = first.json()["deliveryId"].as_str().unwrap().to_owned();
    assert_eq!(post(&d, path, &good, body).status, 200);
    let bad = [("X-Signature-256", "sha256=00"), good[1]];
    assert_eq!(post(&d, path, &bad, body).status, 401);
    assert_eq!(
        post(&d, "/webhook/acme/generic/nope", &good, body).status,
        404
    );

    // Pushes through a local source: a run (for a job no agent serves), a push that matches
    // nothing, and a repository without a lock file.
    let base = std::env::temp_dir().join(format!("kici-metrics-{}/repos", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    repo(&base, "acme/app", true);
    repo(&base, "acme/bare", false);
    let admin_url = format!("http://{}", d.addr);
    let base_str = base.display().to_string();
    let args = [
        "--url", &admin_url, "--token", OWNER, "source", "add", "local",
    ];
    let out = cli(
        &[&args[..], &["--org", "acme", "--path", &base_str]].concat(),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for (full_name, branch) in [
        ("acme/app", "main"),
        ("acme/app", "other"),
        ("acme/bare", "main"),
    ] {
        let push =
            json!({"ref": format!("refs/heads/{branch}"), "repository": {"full_name": full_name}});
        let h = [
            ("Content-Type", "application/json"),
            ("X-Event-Type", "push"),
        ];
        let r = post(
            &d,
            "/webhook/acme/generic/repos",
            &h,
            push.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    }
    wait_value(
        pg,
        &db,
        "SELECT count(*) FROM event_log WHERE status NOT IN ('received', 'processing')",
        "3",
    );

    // A job run by the scripted agent.
    let token = admin(&d, OWNER, "POST", "/agent-tokens", json!({})).json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (run_id, jobs) = queue_run(&db, &["build"], &[]);
    let mut agent = TestAgent::online(d.addr, "metrics-agent", &token);
    let job = agent.dispatch(T).expect("a job dispatched");
    agent.run_job(&job, "success");
    wait_value(
        pg,
        &db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run_id}'"),
        "success",
    );

    // A relayed delivery, then the link drops and comes back.
    let start = json!({
        "messageId": "metrics-m-1", "routingKey": "github:4242", "deliveryId": "metrics-relayed-9",
        "event": "push", "headers": {"content-type": "application/json"},
    });
    platform.relay(start, b"{}", 1024);
    platform.wait_for("webhook.ack", T, |a| a["messageId"] == "metrics-m-1");
    let connects = platform.connects().len();
    platform.kick();
    let deadline = Instant::now() + T;
    while platform.connects().len() == connects {
        assert!(Instant::now() < deadline, "the link did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (text, after) = until(&d, "every counter moved", |s| {
        value(
            s,
            "kici_orch_jobs_completed_total",
            &[("conclusion", "success")],
        ) >= 1.0
            && value(
                s,
                "kici_orch_runs_completed_total",
                &[("conclusion", "success")],
            ) >= 1.0
            && value(s, "kici_orch_platform_reconnects_total", &[]) >= 1.0
    });
    let v = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels);
    let generic = [("kind", "generic"), ("via", "direct")];
    // 202, 200 and 401 (and the 3 local pushes) reached the intake; the unknown source was
    // refused from the head.
    assert_eq!(v("kici_webhooks_received_total", &generic), 6.0);
    for (verdict, n) in [
        ("accepted", 4.0),
        ("duplicate", 1.0),
        ("invalid_signature", 1.0),
    ] {
        let mut l = generic.to_vec();
        l.push(("verdict", verdict));
        assert_eq!(v("kici_orch_webhook_verdicts_total", &l), n, "{verdict}");
    }
    for (status, n) in [("202", 4.0), ("200", 1.0), ("401", 1.0), ("404", 1.0)] {
        let l = [("kind", "generic"), ("status", status)];
        assert_eq!(v("kici_orch_webhooks_answered_total", &l), n, "{status}");
    }
    for outcome in ["run_created", "no_match", "lockfile_missing"] {
        let l = [("outcome", outcome)];
        assert_eq!(
            v("kici_orch_deliveries_processed_total", &l),
            1.0,
            "{outcome}"
        );
    }
    assert_eq!(v("kici_orch_trigger_match_seconds_count", &[]), 2.0);
    assert_eq!(
        v("kici_orch_runs_created_total", &[]),
        1.0,
        "the pipeline's run"
    );
    // Its job waits for a label nobody has.
    assert_eq!(
        v("kici_orch_dispatch_queue_jobs", &[("status", "pending")]),
        1.0
    );
    assert!(v("kici_orch_dispatch_queue_oldest_pending_seconds", &[]) > 0.0);
    assert_eq!(v("kici_dedup_hits_total", &[("via", "direct")]), 1.0);
    assert!(v("kici_orch_ingest_commit_seconds_count", &[]) >= 1.0);
    assert!(v("kici_orch_ingest_batch_size_sum", &[]) >= 1.0);
    assert_eq!(v("kici_orch_jobs_dispatched_total", &[]), 1.0);
    assert_eq!(v("kici_orch_dispatch_latency_seconds_count", &[]), 1.0);
    assert_eq!(
        v(
            "kici_orch_dispatch_latency_seconds_bucket",
            &[("le", "+Inf")]
        ),
        1.0
    );
    assert!(v("kici_orch_log_lines_stored_total", &[]) >= 3.0);
    assert!(v("kici_orch_log_bytes_stored_total", &[]) > 20.0);
    assert_eq!(v("kici_orch_agents_connected", &[]), 1.0);
    assert_eq!(v("kici_orch_agent_slots", &[("state", "busy")]), 0.0);
    assert_eq!(
        v(
            "kici_orch_platform_relayed_total",
            &[("result", "rejected_unknown_source")]
        ),
        1.0
    );
    let relayed = [("kind", "github"), ("via", "relayed")];
    assert_eq!(v("kici_webhooks_received_total", &relayed), 1.0);
    assert!(v("kici_orch_db_pool_connections", &[]) >= 1.0);

    // Nothing that identifies a delivery, a run or a secret.
    for secret in [
        HOOK_SECRET,
        OWNER,
        PlatformDouble::TOKEN,
        &token,
        &delivery_id,
        "metrics-delivery-key-7",
        "metrics-relayed-9",
        &run_id,
        &jobs[0],
        "acme",
    ] {
        assert!(!text.contains(secret), "{secret:?} appears in /metrics");
    }
    // Only GET and HEAD.
    let r = request(d.addr, "POST", "/metrics", &[], b"");
    assert_eq!(r.status, 405);
    let _ = std::fs::remove_dir_all(base.parent().unwrap());
}

/// `<base>/<owner>/<name>`, a git repository with one commit; with a lock file whose one
/// workflow runs on pushes to main, a job for a label no agent has.
fn repo(base: &std::path::Path, full_name: &str, lock: bool) {
    let repo = base.join(full_name);
    std::fs::create_dir_all(repo.join(".kici")).unwrap();
    git_ok(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "metrics\n").unwrap();
    if lock {
        std::fs::write(
            repo.join(".kici/kici.lock.json"),
            r##"{"schemaVersion":29,"source":{"file":".kici/workflows/ci.ts","export":"#default"},"workflows":[
            {"name":"ci","contentHash":"h","triggers":[{"_type":"push","branches":[{"type":"glob","pattern":"main"}],"paths":[]}],
             "jobs":[{"_type":"static","name":"build","runsOn":[{"kind":"exact","value":"metrics-unserved"}],"needs":[],"steps":[]}]}]}"##,
        )
        .unwrap();
    }
    git_ok(&repo, &["add", "."]);
    git_ok(&repo, &["commit", "-q", "-m", "first"]);
}

/// A local address of this machine that is not loopback, if it has one.
fn non_loopback_ip() -> Option<IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the outgoing interface's address.
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[test]
fn the_token_rule_holds_off_loopback() {
    let db = PgCluster::shared().create_database();
    let mut env = base_env(&db);
    env.retain(|(k, _)| k != "KICI_BIND_ADDRESS");
    env.push(("KICI_BIND_ADDRESS".into(), "0.0.0.0".into()));
    env.push(("KICI_METRICS_TOKEN".into(), METRICS_TOKEN.into()));
    let d = Daemon::start(&env);
    let port = d.addr.port();
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    let bearer = format!("Bearer {METRICS_TOKEN}");
    let wrong = format!("Bearer {METRICS_TOKEN}x");

    // Loopback: open without a token.
    assert_eq!(request(loopback, "GET", "/metrics", &[], b"").status, 200);
    // Through a proxy on this host (a forwarding header): the token rule applies.
    let fwd = ("X-Forwarded-For", "203.0.113.9");
    let r = request(loopback, "GET", "/metrics", &[fwd], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(r.json()["error"].as_str().unwrap().contains("bearer token"));
    let r = request(
        loopback,
        "GET",
        "/metrics",
        &[fwd, ("Authorization", &wrong)],
        b"",
    );
    assert_eq!(r.status, 401);
    assert!(!String::from_utf8_lossy(&r.body).contains(METRICS_TOKEN));
    let r = request(
        loopback,
        "GET",
        "/metrics",
        &[fwd, ("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200);

    // From this machine's own non-loopback address: a real remote peer.
    match non_loopback_ip() {
        Some(ip) => {
            let remote = SocketAddr::new(ip, port);
            assert_eq!(request(remote, "GET", "/metrics", &[], b"").status, 401);
            let auth = [("Authorization", wrong.as_str())];
            assert_eq!(request(remote, "GET", "/metrics", &auth, b"").status, 401);
            let auth = [("Authorization", bearer.as_str())];
            let r = request(remote, "GET", "/metrics", &auth, b"");
            assert_eq!(r.status, 200);
            parse(&String::from_utf8(r.body).unwrap());
            // Health stays open: only /metrics is guarded.
            assert_eq!(request(remote, "GET", "/health", &[], b"").status, 200);
        }
        None => eprintln!("no non-loopback address here: the proxied-request checks stand in"),
    }
}

/// Starts the daemon with stderr into `log` (a file) and `extra` variables; waits until it
/// listens, then stops it; returns what it logged.
fn log_to_file(extra: &[(&str, &str)], stream_of_log: bool) -> String {
    let db = PgCluster::shared().create_database();
    let log = std::env::temp_dir().join(format!(
        "kici-metrics-log-{}-{}.log",
        std::process::id(),
        db.rsplit('/').next().unwrap()
    ));
    let file = File::create(&log).unwrap();
    let mut cmd = command();
    cmd.args(["orchestrator", "run"])
        .envs(base_env(&db))
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file.try_clone().unwrap()));
    if stream_of_log {
        let meta = file.metadata().unwrap();
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("Listening on http://") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    text
}

#[test]
fn json_logs_are_one_object_per_line() {
    let text = log_to_file(&[("KICI_LOG_FORMAT", "json")], false);
    let mut lines = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
        for key in ["time", "level", "target", "message"] {
            assert!(v[key].is_string(), "{key} missing: {line}");
        }
        let time = v["time"].as_str().unwrap();
        assert!(
            time.parse::<jiff::Timestamp>().is_ok(),
            "not RFC 3339: {time}"
        );
        lines += 1;
    }
    assert!(lines >= 3, "{text}");
    assert!(
        text.contains(r#""message":"Listening on http://"#),
        "{text}"
    );
}

#[test]
fn text_logs_carry_a_priority_only_for_journald() {
    // A file, even with a JOURNAL_STREAM inherited from elsewhere: time and level, no <N>.
    let text = log_to_file(&[("JOURNAL_STREAM", "1:2")], false);
    for line in text.lines() {
        assert!(
            !line.starts_with('<'),
            "priority prefix in a file: {line:?}"
        );
        assert!(
            line.contains(" INFO ") || line.contains(" WARN "),
            "{line:?}"
        );
    }
    // The stream JOURNAL_STREAM names is stderr: journald's `<N>` and no time.
    let text = log_to_file(&[], true);
    assert!(text.lines().count() >= 3, "{text}");
    for line in text.lines() {
        assert!(
            line.starts_with("<6>") || line.starts_with("<4>"),
            "no priority for journald: {line:?}"
        );
    }
}
