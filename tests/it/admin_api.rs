//! The admin API against a real daemon and PostgreSQL, with a fake GitHub that checks App JWTs:
//! every route × every kind of caller, secrets encrypted at rest, GitHub's verdicts.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{daemon::*, fake_github::*, pg::PgCluster};

const OWNER: &str = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
const APP_ID: i64 = 1001;

struct Env {
    d: Daemon,
    pg: &'static PgCluster,
    url: String,
    gh: FakeGitHub,
    key_pem: String,
}

fn call(
    d: &Daemon,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    request(
        d.addr,
        method,
        &format!("/api/v1/admin{path}"),
        &headers,
        body.as_bytes(),
    )
}

fn setup() -> Env {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(APP_ID, "KiCI Test App", "kici-test-app", public_der);
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let mut env = base_env(&url);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.push(("KICI_GITHUB_API_URL".into(), gh.url.clone()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    Env {
        d,
        pg,
        url,
        gh,
        key_pem,
    }
}

fn new_token(d: &Daemon, role: &str, routing_key: Option<&str>) -> (String, String) {
    let r = call(
        d,
        Some(OWNER),
        "POST",
        "/tokens",
        Some(json!({ "label": format!("{role}-token"), "role": role, "routingKey": routing_key })),
    );
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

fn add_github(e: &Env, token: &str) -> HttpResponse {
    call(
        &e.d,
        Some(token),
        "POST",
        "/sources",
        Some(json!({
            "provider": "github", "name": "main-org", "appId": APP_ID.to_string(),
            "privateKey": e.key_pem, "webhookSecret": "gh-webhook-secret-value"
        })),
    )
}

#[test]
fn every_route_for_every_kind_of_caller() {
    let e = setup();
    let d = &e.d;
    assert_eq!(add_github(&e, OWNER).status, 201);
    let g1 = call(
        d,
        Some(OWNER),
        "POST",
        "/generic-sources",
        Some(json!({
            "orgId": "org1", "name": "stripe", "verificationConfig": { "secret": "generic-hmac-secret" }
        })),
    );
    assert_eq!(g1.status, 201, "{}", String::from_utf8_lossy(&g1.body));
    let g1 = g1.json()["source"]["id"].as_str().unwrap().to_owned();
    let (admin, _) = new_token(d, "admin", None);
    let (auditor, _) = new_token(d, "auditor", None);
    let (scoped, _) = new_token(d, "admin", Some("github:1001"));
    let (revoked, revoked_id) = new_token(d, "owner", None);
    assert_eq!(
        call(
            d,
            Some(OWNER),
            "DELETE",
            &format!("/tokens/{revoked_id}"),
            None
        )
        .status,
        200
    );
    let missing = "6f1c0000-0000-4000-8000-00000000dead";

    // (method, path, body, [owner, admin, auditor, scoped]); none/invalid/revoked are always 401.
    let mut n = 0;
    let mut generic_body = || {
        n += 1;
        Some(json!({ "orgId": "org1", "name": format!("src-{n}"), "verificationMethod": "none" }))
    };
    let cases: Vec<(&str, String, Option<Value>, [u16; 4])> = vec![
        ("GET", "/sources".into(), None, [200, 200, 200, 200]),
        (
            "POST",
            "/sources".into(),
            Some(
                json!({ "provider": "github", "name": "x", "appId": "1001", "privateKey": e.key_pem }),
            ),
            [409, 409, 403, 403],
        ),
        (
            "PATCH",
            "/sources/github%3A1001".into(),
            Some(json!({ "name": "renamed" })),
            [200, 200, 403, 200],
        ),
        (
            "PATCH",
            "/sources/github%3A1001".into(),
            Some(json!({ "webhookSecret": "rotated-secret" })),
            [200, 200, 403, 200],
        ),
        (
            "GET",
            "/sources/github%3A1001/webhook-secret".into(),
            None,
            [200, 200, 403, 200],
        ),
        (
            "DELETE",
            "/sources/github%3A9999".into(),
            None,
            [404, 404, 403, 403],
        ),
        (
            "POST",
            "/generic-sources".into(),
            generic_body(),
            [201, 201, 403, 403],
        ),
        (
            "GET",
            "/generic-sources?orgId=org1".into(),
            None,
            [200, 200, 200, 200],
        ),
        (
            "GET",
            format!("/generic-sources/{g1}"),
            None,
            [200, 200, 200, 403],
        ),
        (
            "GET",
            format!("/generic-sources/{g1}?includeSecrets=true"),
            None,
            [200, 200, 403, 403],
        ),
        (
            "PATCH",
            format!("/generic-sources/{g1}"),
            Some(json!({ "rateLimitRpm": 100 })),
            [200, 200, 403, 403],
        ),
        (
            "POST",
            format!("/generic-sources/{g1}/disable"),
            None,
            [200, 200, 403, 403],
        ),
        (
            "POST",
            format!("/generic-sources/{g1}/enable"),
            None,
            [200, 200, 403, 403],
        ),
        (
            "DELETE",
            format!("/generic-sources/{missing}"),
            None,
            [404, 404, 403, 404],
        ),
        (
            "POST",
            "/tokens".into(),
            Some(json!({ "label": "t", "role": "auditor" })),
            [201, 403, 403, 403],
        ),
        ("GET", "/tokens".into(), None, [200, 403, 403, 403]),
        (
            "DELETE",
            format!("/tokens/{missing}"),
            None,
            [404, 403, 403, 403],
        ),
        (
            "POST",
            "/db/migrate".into(),
            Some(json!({})),
            [200, 200, 403, 403],
        ),
        (
            "GET",
            "/db/migrate/status".into(),
            None,
            [200, 200, 200, 403],
        ),
    ];
    let callers = [OWNER, admin.as_str(), auditor.as_str(), scoped.as_str()];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &cases {
        // The generic POST needs a fresh name per caller.
        for (i, token) in callers.iter().enumerate() {
            let body = if *method == "POST" && path == "/generic-sources" {
                generic_body()
            } else {
                body.clone()
            };
            let r = call(d, Some(token), method, path, body);
            if r.status != expected[i] {
                failures.push(format!(
                    "{method} {path} as {}: {} (wanted {}) {}",
                    ["owner", "admin", "auditor", "scoped"][i],
                    r.status,
                    expected[i],
                    String::from_utf8_lossy(&r.body)
                ));
            }
            if r.status == 403 {
                assert!(
                    r.json()["error"].is_string(),
                    "{method} {path}: 403 without an error message"
                );
            }
        }
        for (who, token) in [
            ("no token", None),
            ("invalid token", Some("f".repeat(64))),
            ("revoked token", Some(revoked.clone())),
        ] {
            let r = call(d, token.as_deref(), method, path, body.clone());
            let want = if who == "no token" {
                "Missing authorization"
            } else {
                "Invalid or expired token"
            };
            if r.status != 401 || r.json()["error"] != want {
                failures.push(format!(
                    "{method} {path} with {who}: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Messages of the two kinds of refusal.
    let r = call(
        d,
        Some(&auditor),
        "POST",
        "/generic-sources",
        generic_body(),
    );
    assert_eq!(
        r.json()["error"],
        r#"Role "auditor" does not have permission "context.create""#
    );
    let r = call(d, Some(&scoped), "GET", "/tokens", None);
    assert_eq!(
        r.json()["error"],
        r#"Role "admin" does not have permission "token.manage""#
    );
    // "bootstrap" belongs to KICI_BOOTSTRAP_ADMIN_TOKEN's row: no other token may take it.
    let r = call(
        d,
        Some(OWNER),
        "POST",
        "/tokens",
        Some(json!({ "label": "bootstrap", "role": "auditor" })),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        String::from_utf8_lossy(&r.body).contains("is reserved"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = call(d, Some(&scoped), "POST", "/generic-sources", generic_body());
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("requires an unscoped admin token"));
    let r = call(
        d,
        Some(&scoped),
        "GET",
        &format!("/generic-sources/{g1}"),
        None,
    );
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("restricted to a single routing key"));
    // Scoped lists are filtered to the token's key.
    let r = call(d, Some(&scoped), "GET", "/generic-sources?orgId=org1", None);
    assert_eq!(r.json()["sources"].as_array().unwrap().len(), 0);
    let r = call(d, Some(&scoped), "GET", "/sources", None);
    assert_eq!(r.json()["sources"].as_array().unwrap().len(), 1);
    // last_used_at is kept.
    let used = e.pg.psql(
        &e.url,
        "SELECT count(*) FROM admin_tokens WHERE last_used_at IS NOT NULL",
    );
    assert_eq!(
        used, "4",
        "owner, admin, auditor and scoped tokens were used"
    );
}

#[test]
fn secrets_are_encrypted_at_rest_and_revealed_only_on_request() {
    let e = setup();
    let d = &e.d;
    assert_eq!(add_github(&e, OWNER).status, 201);
    let r = call(
        d,
        Some(OWNER),
        "POST",
        "/generic-sources",
        Some(json!({
            "orgId": "org1", "name": "bearer", "verificationMethod": "bearer_token",
            "verificationConfig": { "token": "generic-bearer-token-value", "headerName": "X-Token" }
        })),
    );
    assert_eq!(r.status, 201);
    let row = r.json()["source"].clone();
    assert_eq!(
        row["verification_config"],
        json!({ "headerName": "x-token" })
    );
    assert_eq!(row["has_secret"], true);
    let id = row["id"].as_str().unwrap();

    let dump = e.pg.psql(
        &e.url,
        "SELECT string_agg(t::text, ' ') FROM (SELECT s::text AS t FROM sources s UNION ALL SELECT g::text FROM generic_webhook_sources g
         UNION ALL SELECT x::text FROM scoped_secrets x UNION ALL SELECT a::text FROM admin_tokens a) q",
    );
    for secret in [
        "gh-webhook-secret-value",
        "generic-bearer-token-value",
        "BEGIN RSA PRIVATE KEY",
        OWNER,
    ] {
        assert!(!dump.contains(secret), "{secret} stored in plaintext");
    }
    let r = call(
        d,
        Some(OWNER),
        "GET",
        &format!("/generic-sources/{id}"),
        None,
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("generic-bearer-token-value"));
    let r = call(
        d,
        Some(OWNER),
        "GET",
        &format!("/generic-sources/{id}?includeSecrets=true"),
        None,
    );
    assert_eq!(
        r.json()["source"]["verification_config"]["token"],
        "generic-bearer-token-value"
    );
    let r = call(
        d,
        Some(OWNER),
        "GET",
        "/sources/github%3A1001/webhook-secret",
        None,
    );
    assert_eq!(
        r.json(),
        json!({ "routingKey": "github:1001", "webhookSecret": "gh-webhook-secret-value" })
    );
    let list = call(d, Some(OWNER), "GET", "/sources", None);
    assert!(!String::from_utf8_lossy(&list.body).contains("gh-webhook-secret-value"));
}

#[test]
fn github_sources_are_checked_with_github() {
    let e = setup();
    let d = &e.d;
    let r = add_github(&e, OWNER);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["routingKey"], "github:1001");
    assert_eq!(v["name"], "KiCI Test App", "the stored name is GitHub's");
    assert_eq!(v["webhookUrl"], Value::Null);
    assert_eq!(v["webhookNote"], "no-public-url");
    assert_eq!(e.gh.requests(), 1);

    // Duplicate: 409 with the reference's message, before asking GitHub again.
    let r = add_github(&e, OWNER);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (
            409,
            json!("Source with routing key github:1001 already exists")
        )
    );

    // A key GitHub does not know: GitHub's reason.
    let (other_key, _) = rsa_key_pair();
    let r = call(
        d,
        Some(OWNER),
        "PATCH",
        "/sources/github%3A1001",
        Some(json!({ "privateKey": other_key })),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        "GitHub API validation failed: A JSON web token could not be decoded"
    );
    let r = call(
        d,
        Some(OWNER),
        "POST",
        "/sources",
        Some(
            json!({ "provider": "github", "name": "n", "appId": "77", "privateKey": "not a pem" }),
        ),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid private key"),
        "{:?}",
        r.json()
    );
    let r = call(
        d,
        Some(OWNER),
        "POST",
        "/sources",
        Some(json!({ "provider": "github", "name": "n" })),
    );
    assert_eq!(
        r.json()["error"],
        "Missing required fields: provider, name, appId, privateKey"
    );

    // Update, read back, delete.
    let r = call(
        d,
        Some(OWNER),
        "PATCH",
        "/sources/github%3A1001",
        Some(json!({ "name": "renamed", "customerId": "acme" })),
    );
    assert_eq!(
        r.json(),
        json!({ "routingKey": "github:1001", "name": "renamed" })
    );
    let list = call(d, Some(OWNER), "GET", "/sources", None).json();
    assert_eq!(list["sources"][0]["customerId"], "acme");
    assert_eq!(list["sources"][0]["config"]["appId"], "1001");
    assert_eq!(
        call(d, Some(OWNER), "DELETE", "/sources/github%3A1001", None).json(),
        json!({ "ok": true })
    );
    assert_eq!(
        call(d, Some(OWNER), "DELETE", "/sources/github%3A1001", None).status,
        404
    );
    assert_eq!(
        e.pg.psql(&e.url, "SELECT count(*) FROM scoped_secrets"),
        "0",
        "secrets go with the source"
    );
}

#[test]
fn generic_source_lifecycle_and_validation() {
    let e = setup();
    let d = &e.d;
    let create = |body: Value| call(d, Some(OWNER), "POST", "/generic-sources", Some(body));
    let r = create(
        json!({ "orgId": "o", "name": "a", "verificationConfig": { "secret": "s1" }, "eventTypePath": "$.event.type", "rateLimitRpm": 120, "allowedEvents": ["push"] }),
    );
    assert_eq!(r.status, 201);
    let row = r.json()["source"].clone();
    let id = row["id"].as_str().unwrap().to_owned();
    assert_eq!(row["routing_key"], format!("generic:o:{id}"));
    assert_eq!(row["verification_method"], "hmac_sha256");
    assert_eq!(row["dedup_window_seconds"], 300);
    assert_eq!(row["max_payload_bytes"], 1048576);
    assert_eq!(row["rate_limit_rpm"], 120);
    assert_eq!(row["allowed_events"], json!(["push"]));
    assert_eq!(row["strip_headers"].as_array().unwrap().len(), 6);
    assert_eq!(row["enabled"], true);
    assert_eq!(row["deleted_at"], Value::Null);

    // Same name in the same org: 409; in another org: fine.
    assert_eq!(
        create(json!({ "orgId": "o", "name": "a", "verificationMethod": "none" })).status,
        409
    );
    assert_eq!(
        create(json!({ "orgId": "p", "name": "a", "verificationMethod": "none" })).status,
        201
    );
    // hmac without a secret is refused with details; bad types too.
    let r = create(json!({ "orgId": "o", "name": "b" }));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "Validation error");
    assert_eq!(r.json()["details"][0]["path"], "verificationConfig.secret");
    let r = create(
        json!({ "orgId": "o", "name": "", "rateLimitRpm": -1, "verificationMethod": "magic" }),
    );
    assert_eq!(
        r.json()["details"].as_array().unwrap().len(),
        3,
        "{:?}",
        r.json()
    );
    let r = request(
        d.addr,
        "POST",
        "/api/v1/admin/generic-sources",
        &[("Authorization", &format!("Bearer {OWNER}"))],
        b"{not json",
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("Invalid JSON body"));
    assert_eq!(
        call(d, Some(OWNER), "GET", "/generic-sources/not-a-uuid", None).status,
        400
    );
    assert_eq!(
        call(d, Some(OWNER), "GET", "/generic-sources", None).json()["error"],
        "Missing orgId query parameter"
    );

    // Patch: partial; switching to none clears the stored secret.
    let r = call(
        d,
        Some(OWNER),
        "PATCH",
        &format!("/generic-sources/{id}"),
        Some(json!({ "name": "renamed", "rateLimitRpm": 300 })),
    );
    assert_eq!(
        (
            r.json()["source"]["name"].clone(),
            r.json()["source"]["rate_limit_rpm"].clone()
        ),
        (json!("renamed"), json!(300))
    );
    assert_eq!(r.json()["source"]["has_secret"], true);
    let r = call(
        d,
        Some(OWNER),
        "PATCH",
        &format!("/generic-sources/{id}"),
        Some(json!({ "verificationMethod": "none" })),
    );
    assert_eq!(r.json()["source"]["has_secret"], false);
    assert_eq!(
        call(
            d,
            Some(OWNER),
            "PATCH",
            &format!("/generic-sources/{id}"),
            Some(json!({ "verificationMethod": "bearer_token" }))
        )
        .status,
        400
    );

    // Disable, enable, soft delete (hidden unless includeDeleted), hard delete.
    assert_eq!(
        call(
            d,
            Some(OWNER),
            "POST",
            &format!("/generic-sources/{id}/disable"),
            None
        )
        .json(),
        json!({ "enabled": false })
    );
    assert_eq!(
        call(
            d,
            Some(OWNER),
            "POST",
            &format!("/generic-sources/{id}/enable"),
            None
        )
        .json(),
        json!({ "enabled": true })
    );
    assert_eq!(
        call(
            d,
            Some(OWNER),
            "DELETE",
            &format!("/generic-sources/{id}"),
            None
        )
        .json(),
        json!({ "deleted": true, "hard": false })
    );
    assert_eq!(
        call(
            d,
            Some(OWNER),
            "GET",
            &format!("/generic-sources/{id}"),
            None
        )
        .status,
        404
    );
    assert_eq!(
        call(d, Some(OWNER), "GET", "/generic-sources?orgId=o", None).json()["sources"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let all = call(
        d,
        Some(OWNER),
        "GET",
        "/generic-sources?orgId=o&includeDeleted=true",
        None,
    )
    .json();
    assert!(all["sources"][0]["deleted_at"].is_string());
    // The name is free again once the old row is soft-deleted.
    let again = create(json!({ "orgId": "o", "name": "renamed", "verificationMethod": "none" }));
    assert_eq!(again.status, 201);
    let id2 = again.json()["source"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            d,
            Some(OWNER),
            "DELETE",
            &format!("/generic-sources/{id2}?hard=true"),
            None
        )
        .json(),
        json!({ "deleted": true, "hard": true })
    );
    assert_eq!(
        e.pg.psql(
            &e.url,
            &format!("SELECT count(*) FROM generic_webhook_sources WHERE id = '{id2}'")
        ),
        "0"
    );
}
