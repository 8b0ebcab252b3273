//! `rotate-key` against real daemons: every sealed value (workflow secrets, a GitHub App's key
//! and webhook secret, a generic source's secret) re-sealed under the new key so a daemon
//! without `KICI_SECRET_KEY_OLD` serves them all; an undecryptable row aborts with nothing
//! changed.

use crate::support;

use std::time::Duration;

use kici_orchestrator::crypto::{self, SecretBox, SecretKey};
use serde_json::json;
use support::{
    daemon::{Daemon, TEST_KEY},
    fake_github::{rsa_key_pair, FakeGitHub},
    pg::PgCluster,
    webhook::{admin, generic_source, post, sign},
};

use super::secrets_admin::daemon_env;

const OWNER: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
const NEW_KEY: &str = "f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000";
const APP_ID: i64 = 4242;

fn with_keys(url: &str, gh: &FakeGitHub, current: &str, old: Option<&str>) -> Daemon {
    let mut env = daemon_env(url);
    env.retain(|(k, _)| k != "KICI_SECRET_KEY");
    env.push(("KICI_SECRET_KEY".into(), current.into()));
    if let Some(old) = old {
        env.push(("KICI_SECRET_KEY_OLD".into(), old.into()));
    }
    env.push(("KICI_GITHUB_API_URL".into(), gh.url.clone()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    d
}

/// Every `scoped_secrets` row opens with `key` alone.
fn all_open_with(url: &str, key: &str) -> usize {
    let sbox = SecretBox::new(SecretKey::parse(key).unwrap(), None);
    let rows = PgCluster::shared().psql(
        url,
        "SELECT org_id, scope, key, encrypted_value FROM scoped_secrets ORDER BY 1, 2, 3",
    );
    let mut n = 0;
    for row in rows.lines() {
        let cols: Vec<&str> = row.split('|').collect();
        let aad = crypto::aad(cols[0], cols[1], cols[2]);
        sbox.open(cols[3], &aad)
            .unwrap_or_else(|e| panic!("{row}: {e}"));
        n += 1;
    }
    n
}

#[test]
fn rotation_lets_a_daemon_without_the_old_key_serve_everything() {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(APP_ID, "Rotation App", "rotation-app", public_der);
    let url = PgCluster::shared().create_database();
    let mut first = with_keys(&url, &gh, TEST_KEY, None);
    let source = json!({
        "provider": "github", "name": "rot", "appId": APP_ID.to_string(),
        "privateKey": key_pem, "webhookSecret": "rot-gh-webhook-secret"
    });
    assert_eq!(admin(&first, OWNER, "POST", "/sources", source).status, 201);
    let generic = generic_source(
        &first,
        OWNER,
        "acme",
        json!({ "name": "hooks", "verificationConfig": { "secret": "rot-generic-secret" } }),
    );
    let generic_id = generic["id"].as_str().unwrap().to_owned();
    for (path, value) in [
        ("/secrets/acme/aws%2Fprod/DB_PASSWORD", "rot-db-password"),
        ("/secrets/acme/__org__/NPM_TOKEN", "rot-npm-token"),
    ] {
        let r = admin(&first, OWNER, "PUT", path, json!({ "value": value }));
        assert_eq!(r.status, 200);
    }
    first.terminate();

    // The operator changes the key and keeps the old one for the rotation.
    let mut second = with_keys(&url, &gh, NEW_KEY, Some(TEST_KEY));
    let r = admin(&second, OWNER, "POST", "/rotate-key", json!({}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["reEncrypted"], 5, "{v}");
    assert_eq!(v["reEncryptedWithOldKey"], 5, "{v}");
    assert_eq!(
        (v["reEncryptedConfigs"].clone(), v["skippedConfigs"].clone()),
        (json!(0), json!(0))
    );
    second.terminate();
    assert_eq!(all_open_with(&url, NEW_KEY), 5);

    // KICI_SECRET_KEY_OLD removed: sources and secrets are all served.
    let third = with_keys(&url, &gh, NEW_KEY, None);
    let r = admin(
        &third,
        OWNER,
        "GET",
        &format!("/sources/github%3A{APP_ID}/webhook-secret"),
        json!({}),
    );
    assert_eq!(r.json()["webhookSecret"], "rot-gh-webhook-secret");
    let r = admin(
        &third,
        OWNER,
        "GET",
        &format!("/generic-sources/{generic_id}?includeSecrets=true"),
        json!({}),
    );
    assert_eq!(
        r.json()["source"]["verification_config"]["secret"],
        "rot-generic-secret",
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let body = br#"{"type":"ping"}"#;
    let sig = format!("sha256={}", sign("rot-generic-secret", body));
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Signature-256", sig.as_str()),
        ("X-Idempotency-Key", "rot-1"),
    ];
    assert_eq!(
        post(&third, "/webhook/acme/generic/hooks", &headers, body).status,
        202
    );
    // The webhook secret of the GitHub App verifies a delivery.
    let gh_body = br#"{"zen":"ok","hook_id":1}"#;
    let gh_sig = format!("sha256={}", sign("rot-gh-webhook-secret", gh_body));
    let gh_headers = [
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "ping"),
        ("X-GitHub-Delivery", "rot-delivery-1"),
        ("X-GitHub-Hook-Installation-Target-ID", "4242"),
        ("X-Hub-Signature-256", gh_sig.as_str()),
    ];
    let r = post(&third, "/webhook/__default__/github", &gh_headers, gh_body);
    assert!(
        r.status < 300,
        "GitHub delivery refused: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let audit = admin(&third, OWNER, "GET", "/audit?action=rotateKey", json!({})).json();
    assert_eq!(audit["entries"][0]["metadata"]["reEncrypted"], 5);
    assert_eq!(audit["entries"][0]["token_label"], "bootstrap");
    assert!(!third.stderr().contains("decrypt"), "{}", third.stderr());
}

#[test]
fn an_undecryptable_row_aborts_the_rotation_with_nothing_changed() {
    let (_, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(APP_ID, "Rotation App", "rotation-app", public_der);
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let d = with_keys(&url, &gh, TEST_KEY, None);
    for (path, value) in [
        ("/secrets/acme/aws%2Fprod/BROKEN", "rot-broken-value"),
        ("/secrets/acme/aws%2Fprod/FINE", "rot-fine-value"),
        ("/secrets/beta/__org__/OTHER", "rot-other-value"),
    ] {
        assert_eq!(
            admin(&d, OWNER, "PUT", path, json!({ "value": value })).status,
            200
        );
    }
    // A value moved from another row: well-formed, but bound to another AAD.
    pg.psql(
        &url,
        "UPDATE scoped_secrets SET encrypted_value = (SELECT encrypted_value FROM scoped_secrets WHERE key = 'FINE') WHERE key = 'BROKEN'",
    );
    let snapshot = "SELECT key, encrypted_value, key_version FROM scoped_secrets ORDER BY key";
    let before = pg.psql(&url, snapshot);
    let r = admin(&d, OWNER, "POST", "/rotate-key", json!({}));
    assert_eq!(r.status, 409);
    let message = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        message.contains(r#"scoped_secrets row (org "acme", scope "aws/prod", key "BROKEN")"#)
            && message.contains("nothing was changed"),
        "{message}"
    );
    assert!(
        !message.contains("rot-"),
        "no value in the message: {message}"
    );
    assert_eq!(pg.psql(&url, snapshot), before, "nothing may change");
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM secret_audit_log WHERE action = 'rotateKey'"
        ),
        "0"
    );
}
