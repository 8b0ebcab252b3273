//! `kici-admin diagnose` against real daemons (docs/operations.md, "Diagnose"): a healthy
//! instance configured like the quickstart exits 0 (and the same one diagnosed with --env-file,
//! as if stopped, warns "not running"); a broken storage credential, a GitHub App key that is not
//! the App's, a Platform that went away and a job waiting for a label no agent has each give
//! their line with the fix, and the exit code says how bad it is.

use crate::support;

use std::time::{Duration, Instant};

use kici_orchestrator::{
    crypto::{SecretBox, SecretKey},
    db::sources::{self, NewSource},
};
use serde_json::{json, Value};
use support::{
    agent::{agent_token, queue_run, setup, TestAgent, OWNER},
    daemon::*,
    fake_github::{rsa_key_pair, FakeGitHub},
    pg::PgCluster,
    platform::PlatformDouble,
    s3::S3Server,
    webhook::*,
};

const T: Duration = Duration::from_secs(10);
const ORDER: [&str; 9] = [
    "configuration",
    "database",
    "migrations",
    "clock",
    "storage",
    "github",
    "platform",
    "agents",
    "queue",
];

/// `kici-admin diagnose` through the admin API: exit code, text, and the `--json` answer.
fn diagnose(d: &Daemon) -> (Option<i32>, String, Value) {
    let url = format!("http://{}", d.addr);
    let text = cli(&["--url", &url, "--token", OWNER, "diagnose"], &[]);
    let json = cli(
        &["--url", &url, "--token", OWNER, "diagnose", "--json"],
        &[],
    );
    let answer: Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&json), stderr(&json)));
    assert_eq!(json.status.code(), text.status.code());
    assert_eq!(
        answer["exitCode"].as_i64(),
        text.status.code().map(i64::from)
    );
    (text.status.code(), stdout(&text), answer)
}

/// The check named `name` (`github` matches `github:<appId>`).
fn check<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["checks"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["check"].as_str().is_some_and(|n| n.starts_with(name)))
        })
        .unwrap_or_else(|| panic!("no {name} check in {answer}"))
}

#[test]
fn a_healthy_quickstart_like_instance_exits_0_and_a_stopped_one_warns() {
    let s = setup(PgCluster::shared(), &[]);
    generic_source(
        &s.d,
        OWNER,
        "demo",
        json!({"name": "hello", "verificationMethod": "hmac_sha256",
        "verificationConfig": {"secret": "demo secret"}, "eventTypeHeader": "X-Event-Type"}),
    );
    let (code, text, answer) = diagnose(&s.d);
    assert_eq!(code, Some(0), "{text}");
    let names: Vec<&str> = answer["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(names, ORDER, "{text}");
    for line in text.lines() {
        assert!(line.starts_with("OK "), "{text}");
    }
    assert!(text.contains("reachable, PostgreSQL"), "{text}");
    assert!(check(&answer, "storage")["message"]
        .as_str()
        .unwrap()
        .contains("folder, signed-urls OK"));
    // The same instance diagnosed directly, as a stopped one would be.
    let env_file = s.logs.with_extension("env");
    let mut vars = base_env(&s.db);
    vars.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    vars.push(("KICI_STORAGE_FS_PATH".into(), s.logs.display().to_string()));
    let body: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&env_file, body).unwrap();
    let out = cli(
        &[
            "diagnose",
            "--env-file",
            env_file.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    let _ = std::fs::remove_file(&env_file);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let direct: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check(&direct, "database")["level"], "ok");
    assert_eq!(check(&direct, "migrations")["level"], "ok");
    let agents = check(&direct, "agents");
    assert_eq!(agents["level"], "warn");
    assert!(
        agents["message"].as_str().unwrap().contains("not running"),
        "{direct}"
    );
    assert!(agents["fix"]
        .as_str()
        .unwrap()
        .contains("kici-admin orchestrator start"));
}

#[test]
fn a_broken_storage_credential_fails_with_its_fix() {
    let s3 = S3Server::start();
    s3.create_bucket("diag");
    let pg = PgCluster::shared();
    let mut env = base_env(&pg.create_database());
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.extend(s3.env("diag"));
    env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    let (code, text, answer) = diagnose(&d);
    assert_eq!(code, Some(2), "{text}");
    let storage = check(&answer, "storage");
    assert_eq!(storage["level"], "fail", "{text}");
    assert!(
        storage["fix"]
            .as_str()
            .unwrap()
            .contains("check AWS_SECRET_ACCESS_KEY"),
        "{text}"
    );
    assert!(text.contains("FAIL  storage"), "{text}");
    assert!(!text.contains("not-the-secret") && !text.contains(support::s3::SECRET_KEY));
}

#[test]
fn a_github_app_key_that_is_not_the_apps_fails_with_its_fix() {
    let (_right_key, public_der) = rsa_key_pair();
    let (wrong_key, _) = rsa_key_pair();
    let gh = FakeGitHub::start(7272, "Diagnose App", "diagnose-app", public_der);
    let s = setup(PgCluster::shared(), &[("KICI_GITHUB_API_URL", &gh.url)]);
    // Stored behind the API's back: the API itself refuses a key GitHub does not accept.
    let mut c = postgres::Client::connect(&s.db, postgres::NoTls).unwrap();
    let sbox = SecretBox::new(SecretKey::parse(TEST_KEY).unwrap(), None);
    let source = NewSource {
        name: "diag",
        app_id: "7272",
        slug: None,
        private_key: &wrong_key,
        webhook_secret: Some("hook secret"),
    };
    sources::create(&mut c, &sbox, &source).unwrap();
    let (code, text, answer) = diagnose(&s.d);
    assert_eq!(code, Some(2), "{text}");
    let line = check(&answer, "github");
    assert_eq!(
        (line["check"].as_str(), line["level"].as_str()),
        (Some("github:7272"), Some("fail"))
    );
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("GitHub refused the App JWT (HTTP 401"),
        "{text}"
    );
    assert!(
        line["fix"]
            .as_str()
            .unwrap()
            .contains("kici-admin source update github:7272 --private-key"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[test]
fn a_stopped_platform_fails_with_its_fix() {
    let platform = PlatformDouble::start(None);
    let url = platform.url();
    let s = setup(
        PgCluster::shared(),
        &[
            ("KICI_MODE", "hybrid"),
            ("KICI_PLATFORM_URL", &url),
            ("KICI_PLATFORM_TOKEN", PlatformDouble::TOKEN),
        ],
    );
    platform.wait_for("source.register", T, |_| true);
    let (code, text, answer) = diagnose(&s.d);
    assert_eq!(check(&answer, "platform")["level"], "ok", "{text}");
    assert_eq!(code, Some(0), "{text}");
    platform.stop();
    let deadline = Instant::now() + T;
    let (code, text, answer) = loop {
        let found = diagnose(&s.d);
        if check(&found.2, "platform")["level"] == "fail" || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, Some(2), "{text}");
    let line = check(&answer, "platform");
    assert_eq!(line["level"], "fail", "{text}");
    assert!(
        line["fix"].as_str().unwrap().contains("KICI_PLATFORM_URL"),
        "{text}"
    );
}

#[test]
fn a_job_waiting_for_a_label_no_agent_has_warns_with_its_fix() {
    let s = setup(PgCluster::shared(), &[]);
    let token = agent_token(&s, json!({}));
    let _agent = TestAgent::online(s.d.addr, "agent-diag", &token);
    queue_run(&s.db, &["train"], &["gpu"]);
    let (code, text, answer) = diagnose(&s.d);
    assert_eq!(code, Some(1), "{text}");
    let agents = check(&answer, "agents");
    assert!(
        agents["message"]
            .as_str()
            .unwrap()
            .contains("1 connected (agent-diag)"),
        "{text}"
    );
    let queue = check(&answer, "queue");
    assert_eq!(queue["level"], "warn");
    assert!(
        queue["message"].as_str().unwrap().contains("basic / train"),
        "{text}"
    );
    assert!(
        queue["message"].as_str().unwrap().contains("runsOn [gpu]"),
        "{text}"
    );
    assert!(
        queue["fix"].as_str().unwrap().contains("KICI_LABELS=gpu"),
        "{text}"
    );
    // An auditor may not run it.
    let r = admin(
        &s.d,
        OWNER,
        "POST",
        "/tokens",
        json!({"label": "aud", "role": "auditor"}),
    );
    let auditor = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        admin(&s.d, &auditor, "GET", "/diagnose", Value::Null).status,
        403
    );
}
