//! Every response of the direct webhook ingress, generic and GitHub (docs/operations.md, "Webhook
//! sources", "Webhook intake and dedup"), against a real daemon and PostgreSQL, including the
//! signature edge cases, and what lands in event_log.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{daemon::*, fake_github::*, pg::PgCluster, webhook::*};

const OWNER: &str = "2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d";

fn daemon(extra: &[(&str, &str)]) -> (Daemon, &'static PgCluster, String) {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let mut env = base_env(&url);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    (d, pg, url)
}

fn status_and_json(r: &HttpResponse) -> (u16, Value) {
    (r.status, r.json())
}

#[test]
fn generic_hmac_signature_cases() {
    let (d, pg, url) = daemon(&[]);
    generic_source(
        &d,
        OWNER,
        "acme",
        json!({ "name": "stripe", "verificationConfig": { "secret": "whsec" } }),
    );
    let path = "/webhook/acme/generic/stripe";
    let body = br#"{"type":"invoice.paid","id":"evt_1"}"#;
    let good = sign("whsec", body);
    let mut n = 0;
    let mut send = |sig: Option<String>, body: &[u8]| {
        n += 1;
        let key = format!("k{n}");
        let mut h = vec![
            ("Content-Type", "application/json"),
            ("X-Idempotency-Key", key.as_str()),
        ];
        let sig = sig.unwrap_or_default();
        if !sig.is_empty() {
            h.push(("X-Signature-256", sig.as_str()));
        }
        post(&d, path, &h, body).status
    };
    assert_eq!(
        send(Some(format!("sha256={good}")), body),
        202,
        "sha256= prefix"
    );
    assert_eq!(send(Some(good.clone()), body), 202, "bare hex");
    assert_eq!(
        send(Some(format!("sha256={}", good.to_uppercase())), body),
        202,
        "uppercase hex"
    );
    assert_eq!(
        send(Some(format!("sha256={}", sign("wrong", body))), body),
        401,
        "wrong secret"
    );
    assert_eq!(send(None, body), 401, "missing header");
    assert_eq!(
        send(Some(format!("sha256={}", &good[..63])), body),
        401,
        "truncated"
    );
    let mut changed = body.to_vec();
    changed[5] ^= 1;
    assert_eq!(
        send(Some(format!("sha256={good}")), &changed),
        401,
        "body changed by one byte"
    );
    assert_eq!(send(Some("sha256=zz".into()), body), 401, "not hex");
    let r = post(&d, path, &[], body);
    assert_eq!(
        status_and_json(&r),
        (
            401,
            json!({ "error": "Invalid signature", "rejected": true, "reason": "Invalid signature" })
        )
    );
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM event_log"),
        "3",
        "only the three valid deliveries are recorded"
    );
}

#[test]
fn generic_responses_in_order() {
    let (d, pg, url) = daemon(&[("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES", "64")]);
    let src = generic_source(
        &d,
        OWNER,
        "acme",
        json!({
            "name": "svc", "verificationMethod": "bearer_token", "verificationConfig": { "token": "tok-1" },
            "maxPayloadBytes": 200, "rateLimitRpm": 6, "allowedEvents": ["push", "deploy"], "eventTypePath": "$.event.type"
        }),
    );
    let rk = src["routing_key"].as_str().unwrap().to_owned();
    let path = "/webhook/acme/generic/svc";
    let auth = [("Authorization", "Bearer tok-1")];

    assert_eq!(
        status_and_json(&post(&d, "/webhook/acme/generic/nope", &auth, b"{}")),
        (
            404,
            json!({ "error": "Unknown source", "rejected": true, "reason": "Unknown source" })
        )
    );
    assert_eq!(
        status_and_json(&post(&d, "/webhook/other/generic/svc", &auth, b"{}")),
        (
            404,
            json!({ "error": "Unknown source", "rejected": true, "reason": "Unknown source" })
        )
    );
    let big = vec![b'x'; 201];
    assert_eq!(
        status_and_json(&post(&d, path, &auth, &big)),
        (
            413,
            json!({ "error": "Payload too large", "rejected": true, "reason": "Payload too large", "maxBytes": 200 })
        )
    );
    assert_eq!(
        post(&d, path, &[("Authorization", "Bearer nope")], b"{}").status,
        401
    );
    assert_eq!(
        post(
            &d,
            path,
            &[("Authorization", "tok-1")],
            br#"{"event":{"type":"push"}}"#
        )
        .status,
        202,
        "Bearer prefix optional"
    );

    // Filtered: not in allowedEvents (event type from the $. path).
    let r = post(&d, path, &auth, br#"{"event":{"type":"other"}}"#);
    assert_eq!(
        status_and_json(&r),
        (
            200,
            json!({ "accepted": true, "status": "filtered", "reason": "Event 'other' not in allowed list" })
        )
    );
    // Accepted with an idempotency key, then the same key again: duplicate.
    let h = [
        ("Authorization", "Bearer tok-1"),
        ("X-Idempotency-Key", "idem-1"),
        ("Content-Type", "application/json"),
    ];
    let r = post(
        &d,
        path,
        &h,
        br#"{"event":{"type":"deploy"},"action":"started"}"#,
    );
    assert_eq!(
        status_and_json(&r),
        (
            202,
            json!({ "accepted": true, "deliveryId": format!("{rk}:idem-1") })
        )
    );
    assert_eq!(
        status_and_json(&post(&d, path, &h, br#"{"event":{"type":"deploy"}}"#)),
        (200, json!({ "accepted": true, "duplicate": true }))
    );
    // Unkeyed deliveries carrying the same X-Request-ID: the second is a delivery-id duplicate.
    let h = [("Authorization", "Bearer tok-1"), ("X-Request-ID", "req-9")];
    assert_eq!(
        post(&d, path, &h, br#"{"event":{"type":"push"}}"#).status,
        202
    );
    let r = post(&d, path, &h, br#"{"event":{"type":"push"}}"#);
    assert_eq!(
        status_and_json(&r),
        (
            200,
            json!({ "accepted": true, "deliveryId": format!("{rk}:req-9"), "duplicate": true })
        )
    );
    // Six admitted this minute (the 401 and 413 did not count): the next is rate limited.
    let r = post(&d, path, &auth, br#"{"event":{"type":"push"}}"#);
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        json!({ "error": "Rate limit exceeded", "rejected": true, "reason": "Rate limit exceeded" })
    );
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // What was recorded: event, action, provider, hash, payload omitted over 64 bytes.
    let row = pg.psql(&url, &format!(
        "SELECT event, action, provider, source, status, payload IS NULL, payload_omitted, payload_omitted_reason, payload_size_bytes, payload_hash = encode(sha256('{}'::bytea), 'hex')
         FROM event_log WHERE delivery_id = '{rk}:idem-1'", r#"{"event":{"type":"deploy"},"action":"started"}"#));
    // The pipeline may already have looked at it (a plain generic source has no repository).
    let row = row.replace("|processed|", "|received|");
    assert_eq!(row, "deploy|started|generic|direct|received|f|f||46|t");
    let dedup = pg.psql(&url, &format!("SELECT count(*) FROM dedup_cache WHERE delivery_id = '{rk}:idem-1' AND expires_at > now() + interval '23 hours'"));
    assert_eq!(dedup, "1");
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM event_log"), "3");
    let long = pg.psql(&url, "SELECT count(*) FROM event_log WHERE payload_omitted AND payload_omitted_reason = 'size_exceeded' AND payload IS NULL");
    assert_eq!(long, "0");
}

#[test]
fn event_types_other_methods_and_misconfiguration() {
    let (d, pg, url) = daemon(&[
        ("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES", "10"),
        ("KICI_TRUSTED_PROXIES", "127.0.0.1/32,10.9.9.9"),
    ]);
    generic_source(
        &d,
        OWNER,
        "o",
        json!({ "name": "open", "verificationMethod": "none", "eventTypeHeader": "X-Kind" }),
    );
    generic_source(
        &d,
        OWNER,
        "o",
        json!({ "name": "ips", "verificationMethod": "ip_allowlist", "verificationConfig": { "allowlist": ["10.0.0.1", "192.0.2.7"] } }),
    );
    let event_of = |id: &str| {
        pg.psql(
            &url,
            &format!("SELECT event FROM event_log WHERE delivery_id LIKE '%:{id}'"),
        )
    };
    let p = "/webhook/o/generic/open";
    assert_eq!(
        post(
            &d,
            p,
            &[
                ("X-Kind", "from-header"),
                ("X-Event-Type", "ignored"),
                ("X-Idempotency-Key", "a")
            ],
            b"{}"
        )
        .status,
        202
    );
    assert_eq!(
        post(
            &d,
            p,
            &[("X-Event-Type", "fallback"), ("X-Idempotency-Key", "b")],
            b"{}"
        )
        .status,
        202
    );
    assert_eq!(
        post(
            &d,
            p,
            &[("X-Idempotency-Key", "c"), ("Content-Type", "text/plain")],
            b"hello there"
        )
        .status,
        202
    );
    assert_eq!(
        (event_of("a"), event_of("b"), event_of("c")),
        ("from-header".into(), "fallback".into(), "default".into())
    );
    // Over KICI_EVENT_LOG_MAX_PAYLOAD_BYTES: recorded, payload omitted.
    assert_eq!(pg.psql(&url, "SELECT payload IS NULL, payload_omitted, payload_omitted_reason, payload_size_bytes FROM event_log WHERE delivery_id LIKE '%:c'"), "t|t|size_exceeded|11");

    // Proxy headers are believed from KICI_TRUSTED_PROXIES peers only (this daemon trusts
    // 127.0.0.1 and 10.9.9.9): the right-most untrusted X-Forwarded-For entry, else X-Real-IP.
    let p = "/webhook/o/generic/ips";
    assert_eq!(
        post(
            &d,
            p,
            &[("X-Forwarded-For", " 192.0.2.7 , 10.9.9.9")],
            b"{}"
        )
        .status,
        202
    );
    assert_eq!(post(&d, p, &[("X-Real-IP", "10.0.0.1")], b"{}").status, 202);
    assert_eq!(
        post(&d, p, &[("X-Forwarded-For", "10.0.0.1, 10.9.9.8")], b"{}").status,
        401,
        "the client-written left entry does not count"
    );
    assert_eq!(
        post(&d, p, &[], b"{}").status,
        401,
        "the socket peer (127.0.0.1) is not on the list"
    );

    // A stored hmac source without its secret (written behind the API's back): 500.
    pg.psql(&url, "INSERT INTO generic_webhook_sources (customer_id, name, routing_key) VALUES ('o', 'broken', 'generic:o:broken')");
    let r = wait_for(
        || post(&d, "/webhook/o/generic/broken", &[], b"{}"),
        |r| r.status != 404,
    );
    assert_eq!(
        status_and_json(&r),
        (
            500,
            json!({ "error": "Source verification misconfigured", "rejected": true, "reason": "Source verification misconfigured" })
        )
    );

    // Local sources need JSON, x-event-type, and a repository inside their folder.
    let repos = std::env::temp_dir().join(format!("kici-webhooks-local-{}", std::process::id()));
    std::fs::create_dir_all(repos.join("o/app")).unwrap();
    generic_source(
        &d,
        OWNER,
        "o",
        json!({ "name": "dev", "verificationMethod": "none", "providerType": "local",
                "gitConfig": { "localPath": repos.display().to_string() } }),
    );
    let p = "/webhook/o/generic/dev";
    assert_eq!(
        post(
            &d,
            p,
            &[("X-Event-Type", "push"), ("Content-Type", "text/plain")],
            b"x"
        )
        .json()["reason"],
        "Local source requires JSON body"
    );
    assert_eq!(
        post(&d, p, &[], b"{}").json()["reason"],
        "Missing x-event-type header for local source"
    );
    assert_eq!(
        post(&d, p, &[("X-Event-Type", "push")], b"{}").json()["reason"],
        "the body names no repository.full_name"
    );
    // Past the folder check, this daemon's 10-byte KICI_EVENT_LOG_MAX_PAYLOAD_BYTES refuses it
    // (a delivery that starts runs is kept whole or not accepted).
    let body = br#"{"repository": {"full_name": "o/app"}}"#;
    let r = post(&d, p, &[("X-Event-Type", "push")], body);
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES"));
    let _ = std::fs::remove_dir_all(&repos);
    // Only POST.
    assert_eq!(request(d.addr, "GET", p, &[], b"").status, 405);
}

#[test]
fn disabled_and_deleted_sources_are_unknown() {
    let (d, _, _) = daemon(&[]);
    let src = generic_source(
        &d,
        OWNER,
        "o",
        json!({ "name": "s", "verificationMethod": "none" }),
    );
    let id = src["id"].as_str().unwrap();
    let p = "/webhook/o/generic/s";
    assert_eq!(post(&d, p, &[], b"{}").status, 202);
    admin(
        &d,
        OWNER,
        "POST",
        &format!("/generic-sources/{id}/disable"),
        json!({}),
    );
    assert_eq!(
        post(&d, p, &[], b"{}").status,
        404,
        "disabled: the admin call takes effect at once on this instance"
    );
    admin(
        &d,
        OWNER,
        "POST",
        &format!("/generic-sources/{id}/enable"),
        json!({}),
    );
    assert_eq!(post(&d, p, &[], b"{}").status, 202);
    admin(
        &d,
        OWNER,
        "DELETE",
        &format!("/generic-sources/{id}"),
        json!({}),
    );
    assert_eq!(post(&d, p, &[], b"{}").status, 404);
}

#[test]
fn platform_mode_serves_generic_but_not_direct_github() {
    let (d, _, _) = daemon(&[
        ("KICI_MODE", "platform"),
        ("KICI_PLATFORM_URL", "wss://127.0.0.1:1"),
        ("KICI_PLATFORM_TOKEN", "t"),
    ]);
    generic_source(
        &d,
        OWNER,
        "o",
        json!({ "name": "s", "verificationMethod": "none" }),
    );
    let r = post(
        &d,
        "/webhook/o/generic/s",
        &[("X-Request-ID", "p-1")],
        b"{}",
    );
    assert_eq!(r.status, 202, "generic webhooks are served in every mode");
    let github = [("X-GitHub-Hook-Installation-Target-ID", "1")];
    assert_eq!(post(&d, "/webhook/o/github", &github, b"{}").status, 404);
}

fn wait_for(
    mut f: impl FnMut() -> HttpResponse,
    done: impl Fn(&HttpResponse) -> bool,
) -> HttpResponse {
    let start = std::time::Instant::now();
    loop {
        let r = f();
        if done(&r) || start.elapsed() > Duration::from_secs(5) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn github_direct_ingress() {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(4242, "Hooks App", "hooks-app", public_der);
    let (d, pg, url) = daemon(&[("KICI_GITHUB_API_URL", &gh.url)]);
    let r = admin(
        &d,
        OWNER,
        "POST",
        "/sources",
        json!({ "provider": "github", "name": "x", "appId": "4242", "privateKey": key_pem, "webhookSecret": "It's a Secret to Everybody" }),
    );
    assert_eq!(r.status, 201);
    let body =
        br#"{"action":"opened","ref":"refs/heads/main","repository":{"full_name":"acme/app"}}"#;
    let sig = format!("sha256={}", sign("It's a Secret to Everybody", body));
    let hdr = |target: &'static str, sig: &str, delivery: &str| -> Vec<(String, String)> {
        let mut h = vec![
            ("X-GitHub-Event".to_owned(), "pull_request".to_owned()),
            ("X-GitHub-Delivery".to_owned(), delivery.to_owned()),
        ];
        if !target.is_empty() {
            h.push(("X-GitHub-Hook-Installation-Target-ID".into(), target.into()));
        }
        if !sig.is_empty() {
            h.push(("X-Hub-Signature-256".into(), sig.into()));
        }
        h
    };
    let send = |h: Vec<(String, String)>, body: &[u8]| {
        let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        post(&d, "/webhook/acme/github", &h, body)
    };
    assert_eq!(
        status_and_json(&send(hdr("", &sig, "d1"), body)),
        (
            400,
            json!({ "error": "Missing X-GitHub-Hook-Installation-Target-ID header", "rejected": true, "reason": "Missing X-GitHub-Hook-Installation-Target-ID header" })
        )
    );
    assert_eq!(
        status_and_json(&send(hdr("999", &sig, "d1"), body)),
        (
            404,
            json!({ "error": "Unknown source", "rejected": true, "reason": "Unknown source" })
        )
    );
    assert_eq!(
        send(hdr("4242", "", "d1"), body).status,
        401,
        "missing signature"
    );
    assert_eq!(
        send(hdr("4242", &sig[7..], "d1"), body).status,
        401,
        "GitHub's header needs the sha256= prefix"
    );
    let r = send(hdr("4242", &sig, "d1"), body);
    assert_eq!(
        status_and_json(&r),
        (202, json!({ "accepted": true, "deliveryId": "d1" }))
    );
    assert_eq!(
        status_and_json(&send(hdr("4242", &sig, "d1"), body)),
        (
            200,
            json!({ "accepted": true, "deliveryId": "d1", "duplicate": true })
        )
    );
    let row = pg.psql(&url, "SELECT org_id, routing_key, event, action, provider, repo_identifier, ref, source FROM event_log WHERE delivery_id = 'd1'");
    assert_eq!(
        row,
        "acme|github:4242|pull_request|opened|github|acme/app|refs/heads/main|direct"
    );

    // A source without a webhook secret cannot verify anything: 500.
    let r = admin(&d, OWNER, "DELETE", "/sources/github%3A4242", json!({}));
    assert_eq!(r.status, 200);
    let r = admin(
        &d,
        OWNER,
        "POST",
        "/sources",
        json!({ "provider": "github", "name": "x", "appId": "4242", "privateKey": key_pem }),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        status_and_json(&send(hdr("4242", &sig, "d2"), body)),
        (
            500,
            json!({ "error": "Source verification misconfigured", "rejected": true, "reason": "Source verification misconfigured" })
        )
    );
}

#[test]
fn expired_dedup_entries_are_removed() {
    let (_d, pg, url) = daemon(&[]);
    pg.psql(&url, "INSERT INTO dedup_cache (delivery_id, expires_at) VALUES ('old', now() - interval '1 second'), ('new', now() + interval '1 hour')");
    pg.psql(&url, "INSERT INTO generic_idempotency (source_id, key, expires_at) VALUES (gen_random_uuid(), 'k', now() - interval '1 second')");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    assert_eq!(
        kici_orchestrator::db::events::expire_dedup(&mut c).unwrap(),
        2
    );
    assert_eq!(pg.psql(&url, "SELECT delivery_id FROM dedup_cache"), "new");
}

#[test]
fn a_batch_records_new_deliveries_once_and_reports_duplicates() {
    use kici_orchestrator::db::events::{self, Delivery};
    let (_d, pg, url) = daemon(&[]);
    let d = |id: &str| Delivery {
        id: kici_orchestrator::crypto::uuid_v7(1_700_000_000_000),
        org_id: "o".into(),
        delivery_id: id.into(),
        routing_key: Some("generic:o:x".into()),
        event: Some("push".into()),
        action: None,
        provider: Some("generic".into()),
        repo: None,
        git_ref: None,
        payload: if id == "big" {
            None
        } else {
            Some(b"{}".to_vec())
        },
        size: 2,
        hash: "h".into(),
        dedup_ttl_secs: 60,
        relayed: id == "b",
        headers: None,
    };
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let stmts = events::prepare_record(&mut c).unwrap();
    let (a, b, big) = (d("a"), d("b"), d("big"));
    assert_eq!(
        events::record(&mut c, &stmts, &[&a]).unwrap(),
        [true],
        "the one-delivery statement"
    );
    assert_eq!(
        events::record(&mut c, &stmts, &[&a, &b, &big]).unwrap(),
        [false, true, true],
        "the batch statement"
    );
    assert_eq!(events::record(&mut c, &stmts, &[&b]).unwrap(), [false]);
    assert_eq!(
        pg.psql(
            &url,
            "SELECT delivery_id, payload_omitted FROM event_log ORDER BY delivery_id"
        ),
        "a|f\nb|f\nbig|t"
    );
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM dedup_cache"), "3");
    // Its dedup entry expired (and was swept), but the event log holds the delivery: still a
    // duplicate, one statement or many. Never "new" without a record.
    pg.psql(&url, "DELETE FROM dedup_cache");
    assert_eq!(events::record(&mut c, &stmts, &[&a]).unwrap(), [false]);
    let c2 = d("c");
    assert_eq!(
        events::record(&mut c, &stmts, &[&b, &c2]).unwrap(),
        [false, true]
    );
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM event_log"), "4");
    assert_eq!(
        pg.psql(
            &url,
            "SELECT delivery_id, source FROM event_log ORDER BY delivery_id"
        ),
        "a|direct\nb|relay\nbig|direct\nc|direct"
    );
}
