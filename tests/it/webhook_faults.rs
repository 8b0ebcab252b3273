//! Nothing accepted is lost: webhooks sent continuously while PostgreSQL is stopped and started
//! again get either a 2xx (and are then in event_log) or a 503 — never a 2xx for a lost one.

use crate::support;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{daemon::*, pg::PgCluster, webhook::*};

const OWNER: &str = "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b";

#[test]
fn every_2xx_survives_a_database_restart() {
    let pg = PgCluster::start();
    let url = pg.create_database();
    let mut env = base_env(&url);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    let d = Arc::new(Daemon::start(&env));
    d.wait_ready_status(200, Duration::from_secs(10));
    let src = generic_source(
        &d,
        OWNER,
        "f",
        json!({ "name": "s", "verificationMethod": "none", "rateLimitRpm": 1000000 }),
    );
    let rk = src["routing_key"].as_str().unwrap().to_owned();

    let results: Arc<Mutex<BTreeMap<String, u16>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (d, results, stop) = (d.clone(), results.clone(), stop.clone());
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    i += 1;
                    let key = format!("t{t}-{i}");
                    let r = post(
                        &d,
                        "/webhook/f/generic/s",
                        &[("X-Idempotency-Key", &key)],
                        br#"{"n":1}"#,
                    );
                    results.lock().unwrap().insert(key, r.status);
                    thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(700));
    pg.stop();
    thread::sleep(Duration::from_millis(1500));
    pg.start_again();
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().unwrap();
    }

    let results = results.lock().unwrap();
    let accepted: Vec<&String> = results
        .iter()
        .filter(|(_, s)| **s == 202)
        .map(|(k, _)| k)
        .collect();
    let refused = results.values().filter(|s| **s == 503).count();
    let other: Vec<_> = results
        .iter()
        .filter(|(_, s)| **s != 202 && **s != 503)
        .collect();
    assert!(
        other.is_empty(),
        "only 202 or 503 are allowed: {} others, e.g. {:?}",
        other.len(),
        &other[..other.len().min(5)]
    );
    assert!(
        refused > 0,
        "the database outage was not hit ({} requests)",
        results.len()
    );
    assert!(accepted.len() > 10, "too few accepted: {}", accepted.len());
    let recorded = pg.psql(&url, "SELECT delivery_id FROM event_log");
    let recorded: std::collections::HashSet<&str> = recorded.lines().collect();
    let lost: Vec<_> = accepted
        .iter()
        .filter(|k| !recorded.contains(format!("{rk}:{k}").as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} accepted deliveries are missing from event_log, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    println!(
        "{} accepted and recorded, {refused} refused with 503 during the outage",
        accepted.len()
    );
    // Accepted again after the restart.
    assert_eq!(
        post(
            &d,
            "/webhook/f/generic/s",
            &[("X-Idempotency-Key", "after")],
            b"{}"
        )
        .status,
        202
    );
}
