//! The relay thread in-process (an `App` over a real PostgreSQL, the Platform double over real
//! sockets): status frames built from rows created directly in the database, `state.replay`
//! after each authentication, and frames queued while the Platform is away for 60 s flushed in
//! order right after the next `source.register`.

use crate::support;

use std::{
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use kici_orchestrator::{
    agent::{Hub, HubConfig},
    app::App,
    config::Config,
    crypto::{SecretBox, SecretKey},
    db::{Connector, Pool},
    github::api::GitHubApi,
    ingest::{Intake, Recorder},
    pipeline::process::{Deps, Pipeline},
    platform::{client, status, Link},
    sources::registry::SourceRegistry,
};
use serde_json::{json, Value};
use support::{
    daemon::{base_env, cli, stderr, TEST_KEY},
    pg::PgCluster,
    platform::PlatformDouble,
};

fn app(db_url: &str, platform: &PlatformDouble, link: Arc<Link>) -> Arc<App> {
    let out = cli(&["db", "migrate", "--database-url", db_url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut vars = base_env(db_url);
    vars.retain(|(k, _)| k != "KICI_MODE");
    vars.push(("KICI_MODE".into(), "platform".into()));
    vars.push(("KICI_PLATFORM_URL".into(), platform.url()));
    vars.push(("KICI_PLATFORM_TOKEN".into(), PlatformDouble::TOKEN.into()));
    let config = Config::from_vars(vars).expect("valid config").config;
    let connector = Connector::from_url(db_url).unwrap();
    let hub = Arc::new(Hub::new(
        Pool::new(
            Connector::from_url(db_url).unwrap(),
            2,
            Duration::from_secs(5),
        ),
        None,
        Some(link.clone()),
        None,
        HubConfig {
            ack_timeout: Duration::from_secs(10),
            recovery_window: Duration::from_secs(120),
            auth_required: true,
            instance_id: "inst-link".into(),
        },
    ));
    let registry = Arc::new(SourceRegistry::default());
    let pipeline = Arc::new(Pipeline::start(
        Arc::new(Deps {
            pool: Pool::new(connector.clone(), 2, Duration::from_secs(5)),
            secrets: SecretBox::new(SecretKey::parse(TEST_KEY).unwrap(), None),
            github: GitHubApi::new(""),
            tokens: Default::default(),
            locks: Default::default(),
            registry: registry.clone(),
            wake: {
                let hub = hub.clone();
                Arc::new(move || hub.wake())
            },
            events: hub.events.clone(),
            max_jobs_per_run: kici_orchestrator::pipeline::limits::DEFAULT_JOBS_PER_RUN,
            caches: None,
            checks: None,
        }),
        1,
    ));
    let max_kept = config.event_log_max_payload_bytes;
    Arc::new(App {
        config: Arc::new(config),
        pool: Pool::new(connector.clone(), 4, Duration::from_secs(5)),
        started: Instant::now(),
        secrets: SecretBox::new(SecretKey::parse(TEST_KEY).unwrap(), None),
        github: GitHubApi::new(""),
        intake: Intake::new(
            registry.clone(),
            Recorder::start(connector, 1),
            pipeline.clone(),
            max_kept,
        ),
        registry,
        storage: None,
        platform: Some(link.clone()),
        agents: hub,
        pipeline,
    })
}

fn start_relay(app: &Arc<App>, link: &Arc<Link>, url: &str) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = client::RelayConfig {
        url: url.to_owned(),
        token: PlatformDouble::TOKEN.into(),
        instance_id: "inst-link".into(),
        mode: "platform",
    };
    client::start(app.clone(), link.clone(), cfg, stop.clone());
    stop
}

const RUN: &str = "0b9c1f6e-3c1d-4f4e-9f51-6a0c1d2e3f40";
const JOB_A: &str = "1b9c1f6e-3c1d-4f4e-9f51-6a0c1d2e3f41";
const JOB_B: &str = "2b9c1f6e-3c1d-4f4e-9f51-6a0c1d2e3f42";

fn seed_run(pg: &PgCluster, url: &str) {
    pg.psql(url, &format!(
        "INSERT INTO execution_runs (run_id, workflow_name, status, provider, routing_key, repo_identifier, ref, sha, trigger_event, commit_message, job_count)
         VALUES ('{RUN}', 'ci', 'running', 'github', 'github:1', 'acme/app', 'refs/heads/main', 'abc123', 'push', 'fix: things', 2);
         INSERT INTO execution_jobs (job_id, run_id, job_name, status, agent_id, runs_on_labels, started_at)
         VALUES ('{JOB_A}', '{RUN}', 'build', 'running', 'agent-1', '[\"linux\"]', now()),
                ('{JOB_B}', '{RUN}', 'test', 'pending', NULL, '[]', NULL);"
    ));
}

fn position(frames: &[Value], pred: impl Fn(&Value) -> bool) -> usize {
    frames.iter().position(pred).expect("frame present")
}

#[test]
fn status_frames_replay_and_ordered_flush_after_an_outage() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let mut platform = PlatformDouble::start(None);
    let link = Arc::new(Link::default());
    let app = app(&url, &platform, link.clone());
    seed_run(pg, &url);
    let stop = start_relay(&app, &link, &platform.url());

    let replay = platform.wait_for("state.replay", Duration::from_secs(10), |_| true);
    let run = &replay["runs"][0];
    assert_eq!(
        (
            run["runId"].as_str(),
            run["workflowName"].as_str(),
            run["status"].as_str()
        ),
        (Some(RUN), Some("ci"), Some("running"))
    );
    assert!(run["startedAt"].is_i64(), "{run}");
    assert_eq!(run["repoIdentifier"], "acme/app");
    let jobs: Vec<&str> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobName"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["build", "test"]);
    assert!(
        run["jobs"][1].get("agentId").is_none(),
        "null fields are omitted: {run}"
    );
    let frames = platform.frames();
    let register = position(&frames, |f| f["type"] == "source.register");
    assert!(register < position(&frames, |f| f["type"] == "state.replay"));

    // execution.status and job.status.forward from the rows.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    status::forward_run(&link, &mut db, RUN).unwrap();
    status::forward_job(&link, &mut db, JOB_A, "inst-link").unwrap();
    let exec = platform.wait_for("execution.status", Duration::from_secs(5), |_| true);
    assert_eq!(
        (
            exec["runId"].as_str(),
            exec["status"].as_str(),
            exec["jobCount"].as_i64()
        ),
        (Some(RUN), Some("running"), Some(2))
    );
    assert_eq!(
        (exec["sha"].as_str(), exec["commitMessage"].as_str()),
        (Some("abc123"), Some("fix: things"))
    );
    assert!(exec["messageId"].is_string() && exec["timestamp"].is_i64());
    let job = platform.wait_for("job.status.forward", Duration::from_secs(5), |_| true);
    assert_eq!(
        (
            job["jobName"].as_str(),
            job["agentId"].as_str(),
            job["orchestratorId"].as_str()
        ),
        (Some("build"), Some("agent-1"), Some("inst-link"))
    );
    assert_eq!(job["runsOnLabels"], json!(["linux"]));

    // The Platform goes away; frames produced meanwhile wait, in order.
    platform.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while link.state().phase == kici_orchestrator::platform::Phase::Authenticated {
        assert!(
            Instant::now() < deadline,
            "the link did not notice the outage"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // 60 s away, a frame produced every 1.2 s meanwhile.
    let down = Instant::now();
    for i in 0..50 {
        link.send(status::log_frame(RUN, JOB_A, 0, &[format!("line {i}")]));
        std::thread::sleep(Duration::from_millis(1200));
    }
    assert!(down.elapsed() >= Duration::from_secs(60));
    let registers_before = platform.frames_of("source.register").len();
    platform.restart();
    // Reconnection attempts are at most 60 s apart (plus the connect itself).
    let deadline = Instant::now() + Duration::from_secs(65);
    while platform.frames_of("log.chunk").len() < 50 {
        assert!(
            Instant::now() < deadline,
            "buffered frames not flushed after reconnecting"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // state.replay follows the flush: wait for it before reading the order.
    while platform.frames_of("state.replay").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no state.replay after reconnecting"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let frames = platform.frames();
    let second_register = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f["type"] == "source.register")
        .nth(registers_before)
        .map(|(i, _)| i)
        .expect("registered again");
    let lines: Vec<(usize, String)> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f["type"] == "log.chunk")
        .map(|(i, f)| (i, f["lines"][0].as_str().unwrap().to_owned()))
        .collect();
    assert!(
        lines[0].0 > second_register,
        "flushed after source.register"
    );
    let expected: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    assert_eq!(
        lines.iter().map(|l| l.1.clone()).collect::<Vec<_>>(),
        expected,
        "in order"
    );
    let second_replay = frames
        .iter()
        .rposition(|f| f["type"] == "state.replay")
        .unwrap();
    assert!(
        second_replay > lines[49].0,
        "replayed again after the flush"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
}
