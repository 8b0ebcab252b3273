//! The Platform link of a real daemon (hybrid mode) against the Platform double over real
//! sockets: the handshake and `source.register` (also after admin changes), unknown frames and
//! dashboard requests, relayed deliveries acked exactly once and only after they are recorded,
//! every broken-stream rule, the database-down answer, and reconnection after refused auth and
//! after a 60-second outage during which `/health` and direct webhooks keep working.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    daemon::*,
    fake_github::{rsa_key_pair, FakeGitHub},
    pg::PgCluster,
    platform::PlatformDouble,
    webhook::*,
};

const OWNER: &str = "5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c";
const SECRET: &str = "relay webhook secret";

fn hybrid(pg: &PgCluster, platform: &PlatformDouble, extra: &[(&str, &str)]) -> (Daemon, String) {
    let url = pg.create_database();
    let mut env = platform.hybrid_env(&url, OWNER);
    for (k, v) in [("KICI_CLUSTER_INSTANCE_ID", "inst-1")]
        .into_iter()
        .chain(extra.iter().copied())
    {
        env.push((k.into(), v.into()));
    }
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    (d, url)
}

fn event_rows(pg: &PgCluster, url: &str, delivery: &str) -> usize {
    let out = pg.psql(
        url,
        &format!("SELECT count(*) FROM event_log WHERE delivery_id = '{delivery}'"),
    );
    out.trim().parse().unwrap()
}

fn acks_for(p: &PlatformDouble, message_id: &str) -> Vec<Value> {
    p.frames_of("webhook.ack")
        .into_iter()
        .filter(|a| a["messageId"] == message_id)
        .collect()
}

fn wait_ack(p: &PlatformDouble, message_id: &str) -> Value {
    p.wait_for("webhook.ack", Duration::from_secs(10), |a| {
        a["messageId"] == message_id
    })
}

fn github_start(message_id: &str, delivery: &str, routing_key: &str, signature: &str) -> Value {
    json!({
        "messageId": message_id, "routingKey": routing_key, "deliveryId": delivery,
        "event": "push", "action": null, "signatureHeaderName": "x-hub-signature-256",
        "signatureHeader": signature, "clientIp": "192.0.2.1",
        "headers": {"content-type": "application/json", "x-github-event": "push"},
    })
}

#[test]
fn handshake_registers_sources_and_follows_admin_changes() {
    let pg = PlatformDouble::start(None);
    let (d, _) = hybrid(PgCluster::shared(), &pg, &[]);
    let auth = pg.wait_for("auth.request", Duration::from_secs(10), |_| true);
    assert_eq!(
        auth,
        json!({"type":"auth.request","token":PlatformDouble::TOKEN,"protocolVersion":1,
               "capabilities":{"orchRole":"coordinator","supportedDashboardRequests":["run.cancel.request"]}})
    );
    let first = pg.wait_for("source.register", Duration::from_secs(10), |_| true);
    assert_eq!(
        first["sources"],
        json!([]),
        "registered even with zero sources"
    );
    assert_eq!(
        (first["instanceId"].as_str(), first["mode"].as_str()),
        (Some("inst-1"), Some("hybrid"))
    );
    let ready = d.get("/ready").json();
    assert_eq!(ready["platform"]["state"], "connected", "{ready}");

    let before = Instant::now();
    let src = generic_source(
        &d,
        OWNER,
        "acme",
        json!({ "name": "ci", "verificationMethod": "none" }),
    );
    let key = src["routing_key"].as_str().unwrap().to_owned();
    let again = pg.wait_for("source.register", Duration::from_secs(5), |f| {
        f["sources"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["routingKey"] == key.as_str()))
    });
    println!("admin change to source.register: {:?}", before.elapsed());
    let entry = &again["sources"][0];
    assert_eq!(
        (
            entry["provider"].as_str(),
            entry["subtype"].as_str(),
            entry["name"].as_str()
        ),
        (Some("generic"), Some("generic_webhook"), Some("ci"))
    );

    // Unknown frames are ignored; requests we do not serve get a structured error at once.
    pg.send(&json!({"type": "brand.new.frame", "x": 1}));
    pg.send(&json!({"type": "trust_policy.update", "orgId": "o"}));
    pg.send(&json!({"type": "dashboard.run.detail", "requestId": "q-1", "runId": "r"}));
    let reply = pg.wait_for(
        "dashboard.run.detail.response",
        Duration::from_secs(5),
        |_| true,
    );
    assert_eq!(
        (reply["requestId"].as_str(), reply["code"].as_str()),
        (Some("q-1"), Some("unsupported_request_type"))
    );

    let r = admin(
        &d,
        OWNER,
        "DELETE",
        &format!("/generic-sources/{}", src["id"].as_str().unwrap()),
        json!({}),
    );
    assert!(r.status < 300, "{}", String::from_utf8_lossy(&r.body));
    let gone = pg.wait_for("source.deregister", Duration::from_secs(5), |_| true);
    assert_eq!(gone["routingKeys"], json!([key]));
    assert_eq!(pg.connects().len(), 1, "the link never dropped");
}

#[test]
fn relayed_deliveries_are_acked_once_after_recording() {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(5151, "Relay App", "relay-app", public_der);
    let platform = PlatformDouble::start(None);
    let cluster = PgCluster::shared();
    let (d, url) = hybrid(cluster, &platform, &[("KICI_GITHUB_API_URL", &gh.url)]);
    github_source(&d, OWNER, "relay", "5151", &key_pem, SECRET);
    platform.wait_for("source.register", Duration::from_secs(5), |f| {
        f["sources"][0]["routingKey"] == "github:5151"
    });

    let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"acme/app"},"after":"abc"}"#;
    let sig = format!("sha256={}", sign(SECRET, body));
    // Small chunks: the delivery arrives in several pieces.
    let m1 = platform.relay(github_start("m-1", "d-1", "github:5151", &sig), body, 16);
    let ack = wait_ack(&platform, &m1);
    assert_eq!(
        ack,
        json!({"type":"webhook.ack","messageId":"m-1","deliveryId":"d-1","result":"accepted"})
    );
    assert_eq!(
        event_rows(cluster, &url, "d-1"),
        1,
        "accepted means recorded"
    );

    // The Platform re-sends the same delivery: accepted again, recorded once.
    let m2 = platform.relay(github_start("m-2", "d-1", "github:5151", &sig), body, 1024);
    assert_eq!(wait_ack(&platform, &m2)["result"], "accepted");
    assert_eq!(event_rows(cluster, &url, "d-1"), 1);

    let tampered =
        br#"{"ref":"refs/heads/main","repository":{"full_name":"acme/evil"},"after":"abc"}"#;
    let m3 = platform.relay(
        github_start("m-3", "d-3", "github:5151", &sig),
        tampered,
        1024,
    );
    let ack = wait_ack(&platform, &m3);
    assert_eq!(
        (ack["result"].as_str(), ack["deliveryId"].as_str()),
        (Some("rejected_signature"), Some("d-3"))
    );
    assert_eq!(event_rows(cluster, &url, "d-3"), 0);

    let m4 = platform.relay(github_start("m-4", "d-4", "github:9999", &sig), body, 1024);
    assert_eq!(
        wait_ack(&platform, &m4)["result"],
        "rejected_unknown_source"
    );

    // The signature may also come only in the headers.
    let mut start = github_start("m-5", "d-5", "github:5151", "");
    start["signatureHeader"] = Value::Null;
    start["headers"]["x-hub-signature-256"] = json!(sig);
    let m5 = platform.relay(start, body, 1024);
    assert_eq!(wait_ack(&platform, &m5)["result"], "accepted");

    // A generic source verified with its own HMAC secret.
    let src = generic_source(
        &d,
        OWNER,
        "acme",
        json!({
            "name": "gen", "verificationMethod": "hmac_sha256", "verificationConfig": {"secret": "gen-secret"},
        }),
    );
    let key = src["routing_key"].as_str().unwrap();
    let gbody = br#"{"hello":"world"}"#;
    let gstart = |id: &str, delivery: &str, signature: &str| {
        json!({
            "messageId": id, "routingKey": key, "deliveryId": delivery, "event": "ping",
            "headers": {"content-type": "application/json", "x-signature-256": signature},
        })
    };
    let good = format!("sha256={}", sign("gen-secret", gbody));
    assert_eq!(
        wait_ack(
            &platform,
            &platform.relay(gstart("g-1", "gd-1", &good), gbody, 1024)
        )["result"],
        "accepted"
    );
    assert_eq!(event_rows(cluster, &url, "gd-1"), 1);
    assert_eq!(
        wait_ack(
            &platform,
            &platform.relay(gstart("g-2", "gd-2", "sha256=00"), gbody, 1024)
        )["result"],
        "rejected_signature"
    );

    std::thread::sleep(Duration::from_millis(300));
    for id in ["m-1", "m-2", "m-3", "m-4", "m-5", "g-1", "g-2"] {
        assert_eq!(
            acks_for(&platform, id).len(),
            1,
            "{id} acked more than once"
        );
    }
}

/// The same delivery sent both ways, direct and relayed, goes through the one intake: one
/// event-log record, and the same verdict (the direct answer and the ack say the same thing),
/// whichever way comes first; filtered and forged deliveries alike.
#[test]
fn the_same_delivery_direct_and_relayed_is_recorded_once_with_the_same_verdict() {
    let platform = PlatformDouble::start(None);
    let cluster = PgCluster::shared();
    let (d, url) = hybrid(cluster, &platform, &[]);
    let src = generic_source(
        &d,
        OWNER,
        "acme",
        json!({
            "name": "both", "verificationMethod": "hmac_sha256",
            "verificationConfig": {"secret": "both-secret"}, "allowedEvents": ["push"],
        }),
    );
    let key = src["routing_key"].as_str().unwrap().to_owned();
    platform.wait_for("source.register", Duration::from_secs(5), |f| {
        f["sources"][0]["routingKey"] == key.as_str()
    });
    let body = br#"{"action":"opened","hello":"both ways"}"#;
    let good = format!("sha256={}", sign("both-secret", body));
    // What the direct answer says, in the ack's words.
    let direct = |request_id: &str, event: &str, sig: &str| {
        let r = post(
            &d,
            "/webhook/acme/generic/both",
            &[
                ("Content-Type", "application/json"),
                ("X-Signature-256", sig),
                ("X-Request-ID", request_id),
                ("X-Event-Type", event),
            ],
            body,
        );
        let json: Value = serde_json::from_slice(&r.body).unwrap();
        let verdict = match (
            r.status,
            json["duplicate"].as_bool(),
            json["status"].as_str(),
        ) {
            (202, None, None) => "accepted",
            (200, Some(true), None) => "duplicate",
            (200, None, Some("filtered")) => "filtered",
            (401, ..) => "rejected_signature",
            _ => panic!("unexpected answer {} {json}", r.status),
        };
        (verdict, json)
    };
    let n = std::cell::Cell::new(0);
    let relayed = |request_id: &str, event: &str, sig: &str| {
        n.set(n.get() + 1);
        let start = json!({
            "messageId": format!("both-{}", n.get()), "routingKey": key,
            "deliveryId": format!("{key}:{request_id}"), "event": event, "clientIp": "192.0.2.9",
            "headers": {"content-type": "application/json", "x-signature-256": sig,
                        "x-request-id": request_id, "x-event-type": event},
        });
        wait_ack(&platform, &platform.relay(start, body, 16))["result"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let rows = |request_id: &str| event_rows(cluster, &url, &format!("{key}:{request_id}"));
    // As the ack says it: a duplicate is accepted again, a filtered delivery is accepted.
    fn acked(verdict: &str) -> &str {
        match verdict {
            "accepted" | "duplicate" | "filtered" => "accepted",
            other => other,
        }
    }

    // Direct first, then relayed.
    let (first, json) = direct("one", "push", &good);
    assert_eq!(
        (first, json["deliveryId"].as_str()),
        ("accepted", Some(&*format!("{key}:one")))
    );
    assert_eq!(relayed("one", "push", &good), acked(first));
    assert_eq!(rows("one"), 1, "one record for both copies");
    assert_eq!(direct("one", "push", &good).0, "duplicate");

    // Relayed first, then direct: the direct copy is the duplicate.
    assert_eq!(relayed("two", "push", &good), "accepted");
    let (second, json) = direct("two", "push", &good);
    assert_eq!(
        (second, json["deliveryId"].as_str()),
        ("duplicate", Some(&*format!("{key}:two")))
    );
    assert_eq!(rows("two"), 1);
    assert_eq!(
        cluster.psql(
            &url,
            &format!(
                "SELECT org_id || '|' || event || '|' || action || '|' || provider FROM event_log \
                 WHERE delivery_id IN ('{key}:one', '{key}:two') ORDER BY delivery_id"
            ),
        ),
        "acme|push|opened|generic\nacme|push|opened|generic",
        "the same record whichever way it came"
    );

    // The source's allowed events filter both ways; nothing is recorded.
    let (filtered, _) = direct("three", "other", &good);
    assert_eq!(filtered, "filtered");
    assert_eq!(relayed("three", "other", &good), acked(filtered));
    assert_eq!(rows("three"), 0);

    // A forged signature is refused both ways.
    let forged = format!("sha256={}", sign("not-the-secret", body));
    let (refused, _) = direct("four", "push", &forged);
    assert_eq!(refused, "rejected_signature");
    assert_eq!(relayed("four", "push", &forged), refused);
    assert_eq!(rows("four"), 0);
}

#[test]
fn broken_streams_are_rejected_exactly_once() {
    let platform = PlatformDouble::start(None);
    let (d, _) = hybrid(PgCluster::shared(), &platform, &[]);
    let src = generic_source(
        &d,
        OWNER,
        "acme",
        json!({ "name": "open", "verificationMethod": "none" }),
    );
    let key = src["routing_key"].as_str().unwrap().to_owned();
    platform.wait_for("source.register", Duration::from_secs(5), |f| {
        f["sources"][0]["routingKey"] == key.as_str()
    });
    let start = |id: &str, total: u64, count: u64| {
        json!({
            "type": "webhook.relay.start", "messageId": id, "routingKey": key, "deliveryId": format!("del-{id}"),
            "event": "e", "headers": {}, "totalSize": total, "chunkCount": count,
        })
    };
    let chunk = |id: &str, seq: u64, data: &str, last: bool| {
        json!({
            "type": "webhook.relay.chunk", "messageId": id, "sequence": seq, "data": data, "final": last,
        })
    };
    let abc = "YWJj"; // "abc"
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            "order",
            vec![
                start("order", 6, 2),
                chunk("order", 1, abc, false),
                chunk("order", 0, abc, false),
                chunk("order", 1, abc, true),
            ],
            "out of order",
        ),
        (
            "big",
            vec![
                start("big", 25 * 1024 * 1024 + 1, 1),
                chunk("big", 0, abc, true),
            ],
            "exceeds",
        ),
        (
            "zero",
            vec![start("zero", 3, 0), chunk("zero", 0, abc, true)],
            "chunkCount",
        ),
        (
            "b64",
            vec![start("b64", 3, 1), chunk("b64", 0, "YW Jj", true)],
            "base64",
        ),
        (
            "short",
            vec![start("short", 6, 2), chunk("short", 0, abc, true)],
            "final chunk",
        ),
        (
            "over",
            vec![start("over", 2, 1), chunk("over", 0, abc, true)],
            "more than totalSize",
        ),
        (
            "ghost",
            vec![chunk("ghost", 0, abc, false), chunk("ghost", 1, abc, true)],
            "unknown",
        ),
    ];
    for (_, frames, _) in &cases {
        for f in frames {
            platform.send(f);
        }
    }
    // A duplicate start of an in-flight delivery changes nothing: one ack, accepted.
    platform.send(&start("dup", 2, 1));
    platform.send(&start("dup", 2, 1));
    platform.send(&chunk("dup", 0, "e30=", true)); // "{}"
    for (id, _, reason) in &cases {
        let ack = wait_ack(&platform, id);
        assert_eq!(ack["result"], "rejected_misconfigured", "{id}: {ack}");
        assert!(
            ack["reason"].as_str().unwrap().contains(reason),
            "{id}: {ack}"
        );
        let delivery = if *id == "ghost" {
            "ghost".to_owned()
        } else {
            format!("del-{id}")
        };
        assert_eq!(ack["deliveryId"], delivery.as_str());
    }
    assert_eq!(wait_ack(&platform, "dup")["result"], "accepted");
    std::thread::sleep(Duration::from_millis(500));
    for id in cases.iter().map(|c| c.0).chain(["dup"]) {
        assert_eq!(
            acks_for(&platform, id).len(),
            1,
            "{id}: {:?}",
            acks_for(&platform, id)
        );
    }
    assert_eq!(
        platform.connects().len(),
        1,
        "bad frames never drop the link"
    );
}

#[test]
fn database_down_is_rejected_misconfigured_so_the_sender_retries() {
    let platform = PlatformDouble::start(None);
    let pg = PgCluster::start();
    let (d, url) = hybrid(&pg, &platform, &[]);
    let src = generic_source(
        &d,
        OWNER,
        "acme",
        json!({ "name": "db", "verificationMethod": "none" }),
    );
    let key = src["routing_key"].as_str().unwrap().to_owned();
    platform.wait_for("source.register", Duration::from_secs(5), |f| {
        f["sources"][0]["routingKey"] == key.as_str()
    });
    let start = |id: &str| json!({"messageId": id, "routingKey": key, "deliveryId": "db-1", "event": "e", "headers": {}});
    pg.stop();
    let ack = wait_ack(&platform, &platform.relay(start("down"), b"{}", 1024));
    assert_eq!(ack["result"], "rejected_misconfigured", "{ack}");
    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let accepted = loop {
        n += 1;
        let id = format!("up-{n}");
        let ack = wait_ack(&platform, &platform.relay(start(&id), b"{}", 1024));
        if ack["result"] == "accepted" {
            break ack;
        }
        assert!(
            Instant::now() < deadline,
            "never accepted after the database came back: {ack}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(accepted["deliveryId"], "db-1");
    assert_eq!(event_rows(&pg, &url, "db-1"), 1);
    // After the restart, source changes still reach the Platform (LISTEN was re-established).
    let later = generic_source(
        &d,
        OWNER,
        "acme",
        json!({ "name": "later", "verificationMethod": "none" }),
    );
    let key = later["routing_key"].as_str().unwrap().to_owned();
    platform.wait_for("source.register", Duration::from_secs(10), |f| {
        f["sources"][0]["routingKey"] == key.as_str()
    });
}

#[test]
fn independent_mode_never_connects() {
    let platform = PlatformDouble::start(None);
    let mut env = base_env(&PgCluster::shared().create_database());
    env.push(("KICI_PLATFORM_URL".into(), platform.url()));
    env.push(("KICI_PLATFORM_TOKEN".into(), PlatformDouble::TOKEN.into()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(platform.connects().is_empty());
    assert!(d.get("/ready").json().get("platform").is_none());
    assert!(
        d.stderr()
            .contains("KICI_PLATFORM_URL is ignored because KICI_MODE is independent"),
        "{}",
        d.stderr()
    );
}

#[test]
fn reconnects_after_refused_auth_and_a_60_second_outage() {
    let mut platform = PlatformDouble::start(None);
    platform.refuse_auth(true);
    let (d, _) = hybrid(PgCluster::shared(), &platform, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while platform.connects().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the orchestrator stopped retrying after auth.failure"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = platform.connects();
    // min(1 s · 1.5^n · (1 + rand·0.5), 60 s): attempt 0 waits 1–1.5 s, attempt 1 waits 1.5–2.25 s.
    let (g1, g2) = (t[1] - t[0], t[2] - t[1]);
    assert!(
        g1 >= Duration::from_millis(950) && g1 <= Duration::from_millis(2000),
        "{g1:?}"
    );
    assert!(
        g2 >= Duration::from_millis(1450) && g2 <= Duration::from_millis(2750),
        "{g2:?}"
    );
    let ready = d.get("/ready").json();
    assert_ne!(ready["platform"]["state"], "connected", "{ready}");
    assert_eq!(
        ready["status"], "ready",
        "the Platform does not decide readiness: {ready}"
    );
    assert!(
        ready["platform"]["lastError"]
            .as_str()
            .unwrap()
            .contains("refused KICI_PLATFORM_TOKEN"),
        "{ready}"
    );
    platform.refuse_auth(false);
    let src = generic_source(
        &d,
        OWNER,
        "acme",
        json!({ "name": "out", "verificationMethod": "none" }),
    );
    let key = src["routing_key"].as_str().unwrap().to_owned();
    let registered = |p: &PlatformDouble| {
        p.frames_of("source.register")
            .iter()
            .filter(|f| {
                f["sources"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["routingKey"] == key.as_str()))
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while registered(&platform) == 0 {
        assert!(
            Instant::now() < deadline,
            "no source.register after auth was allowed again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The Platform goes away for 60 s: the daemon keeps serving.
    platform.stop();
    let down = Instant::now();
    let mut n = 0;
    while down.elapsed() < Duration::from_secs(60) {
        assert_eq!(d.get("/health").status, 200);
        n += 1;
        let r = post(
            &d,
            "/webhook/acme/generic/out",
            &[("X-Request-ID", &format!("outage-{n}"))],
            b"{}",
        );
        assert_eq!(
            r.status, 202,
            "direct webhooks keep working during the outage"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let before = registered(&platform);
    platform.restart();
    let back = Instant::now();
    while registered(&platform) == before {
        // The longest wait between attempts is 60 s.
        assert!(
            back.elapsed() < Duration::from_secs(62),
            "not reconnected within the backoff bound"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "reconnected {:?} after the Platform came back",
        back.elapsed()
    );
    assert_eq!(d.get("/ready").json()["platform"]["state"], "connected");
}
