//! Hot reload across instances (LISTEN/NOTIFY): a source added on A is served by B at once;
//! disabling on A makes B answer 404; B's LISTEN connection killed by the server is followed by
//! a reconnect and a full resync that finds a change whose notification was never sent.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{daemon::*, pg::PgCluster, webhook::*};

const OWNER: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

/// Polls until `want` (bounded); returns how long it took.
fn until_status(
    d: &Daemon,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    want: u16,
) -> Duration {
    let start = Instant::now();
    loop {
        let r = post(d, path, headers, body);
        if r.status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{path} still answers {} after 10 s (wanted {want})",
            r.status
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn two_instances_follow_each_other() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let mut env = base_env(&url);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    let a = Daemon::start(&env);
    let b = Daemon::start(&env);
    b.wait_ready_status(200, Duration::from_secs(10));

    let body = br#"{"hello":"world"}"#;
    let sig = format!("sha256={}", sign("shared-secret", body));
    let headers = [("X-Signature-256", sig.as_str())];
    let path = "/webhook/org/generic/hot";
    assert_eq!(post(&b, path, &headers, body).status, 404);
    let src = generic_source(
        &a,
        OWNER,
        "org",
        json!({ "name": "hot", "verificationConfig": { "secret": "shared-secret" } }),
    );
    let took = until_status(&b, path, &headers, body, 202);
    println!(
        "source added on A served by B after {} ms",
        took.as_millis()
    );

    let id = src["id"].as_str().unwrap();
    assert_eq!(
        admin(
            &a,
            OWNER,
            "POST",
            &format!("/generic-sources/{id}/disable"),
            json!({})
        )
        .status,
        200
    );
    let took = until_status(&b, path, &headers, body, 404);
    println!(
        "source disabled on A refused by B after {} ms",
        took.as_millis()
    );

    // A change whose NOTIFY never happens (trigger off), then B's LISTEN connection is killed:
    // only a full resync after the reconnect can find it.
    pg.psql(
        &url,
        "ALTER TABLE generic_webhook_sources DISABLE TRIGGER generic_sources_change_trigger",
    );
    pg.psql(&url, "INSERT INTO generic_webhook_sources (customer_id, name, routing_key, verification_method) VALUES ('org', 'silent', 'generic:org:silent', 'none')");
    pg.psql(
        &url,
        "ALTER TABLE generic_webhook_sources ENABLE TRIGGER generic_sources_change_trigger",
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        post(&b, "/webhook/org/generic/silent", &[], b"{}").status,
        404,
        "no notification: B cannot know yet"
    );
    let killed = pg.psql(&url, &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'kici-listen-{}'", b.child.id()));
    assert_eq!(
        killed, "1",
        "B's LISTEN connection is found by its application_name"
    );
    let took = until_status(&b, "/webhook/org/generic/silent", &[], b"{}", 202);
    println!(
        "B resynced after its LISTEN connection was killed, in {} ms",
        took.as_millis()
    );
    assert!(
        b.stderr().contains("reconnected and resynced"),
        "{}",
        b.stderr()
    );
    // And it keeps following notifications on the new connection.
    assert_eq!(
        admin(
            &a,
            OWNER,
            "POST",
            &format!("/generic-sources/{id}/enable"),
            json!({})
        )
        .status,
        200
    );
    until_status(
        &b,
        path,
        &[("X-Signature-256", sig.as_str()), ("X-Request-ID", "again")],
        body,
        202,
    );
}
