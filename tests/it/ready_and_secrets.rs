//! `/ready` follows the database across a PostgreSQL stop/start, secrets sealed with the master
//! key round-trip through `scoped_secrets`, and the bootstrap admin token rules
//! (docs/operations.md, "Boot and shutdown").

use crate::support;

use std::time::Duration;

use kici_orchestrator::crypto::{self, SecretBox, SecretKey};
use support::{daemon::*, pg::PgCluster};

#[test]
fn ready_follows_the_database_without_a_restart() {
    let pg = PgCluster::start();
    let url = pg.create_database();
    let d = Daemon::start(&base_env(&url));
    d.wait_ready_status(200, Duration::from_secs(10));
    pg.stop();
    let r = d.wait_ready_status(503, Duration::from_secs(15));
    let mut body = r.json();
    // Every supervised thread is listed, none restarted.
    let threads = body
        .as_object_mut()
        .unwrap()
        .remove("threads")
        .expect("threads reported");
    for name in [
        "dispatcher",
        "housekeeping",
        "listen",
        "pipeline-0",
        "pipeline-1",
    ] {
        assert_eq!(threads[name]["restarts"], 0, "{name}: {threads}");
    }
    assert_eq!(
        body,
        serde_json::json!({ "status": "not ready", "checks": { "database": false } })
    );
    assert_eq!(
        d.get("/health").status,
        200,
        "health does not depend on the database"
    );
    pg.start_again();
    let r = d.wait_ready_status(200, Duration::from_secs(15));
    assert_eq!(r.json()["status"], "ready");
    assert_eq!(r.json()["checks"], serde_json::json!({ "database": true }));
}

#[test]
fn secrets_round_trip_through_the_database() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    assert!(cli(&["db", "migrate", "--database-url", &url], &[])
        .status
        .success());
    let key = SecretKey::parse(TEST_KEY).unwrap();
    let sbox = SecretBox::new(key, None);
    let scope = "__source__/6f1c0000-0000-4000-8000-000000000001";
    let aad = crypto::aad("__system__", scope, "webhookSecret");
    let sealed = sbox.seal(b"very-secret-value", &aad);
    pg.psql(
        &url,
        &format!("INSERT INTO scoped_secrets (org_id, scope, key, encrypted_value) VALUES ('__system__', '{scope}', 'webhookSecret', '{sealed}')"),
    );
    let dump = pg.psql(&url, "SELECT encrypted_value FROM scoped_secrets");
    assert!(!dump.contains("very-secret-value"), "plaintext stored");
    assert_eq!(sbox.open(&dump, &aad).unwrap(), b"very-secret-value");
    // Bound to its owner: the same ciphertext under another key name does not open.
    assert!(sbox
        .open(&dump, &crypto::aad("__system__", scope, "privateKey"))
        .is_err());
    // Rotation: a box with a new current key and the old one as fallback still opens it.
    let rotated = SecretBox::new(
        SecretKey::generate(),
        Some(SecretKey::parse(TEST_KEY).unwrap()),
    );
    assert_eq!(rotated.open(&dump, &aad).unwrap(), b"very-secret-value");
    assert!(SecretBox::new(SecretKey::generate(), None)
        .open(&dump, &aad)
        .is_err());
}

#[test]
fn bootstrap_token_generated_once_and_never_again() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let mut d = Daemon::start(&base_env(&url));
    let out = d.stdout_with("KICI Admin Token: ", Duration::from_secs(5));
    let token = out
        .split("KICI Admin Token: ")
        .nth(1)
        .expect("token printed")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!d.stderr().contains(&token), "token must not be logged");
    let stored = pg.psql(
        &url,
        "SELECT token_hash, label, role, revoked FROM admin_tokens",
    );
    assert_eq!(
        stored,
        format!("{}|bootstrap|owner|f", crypto::hash_token(&token))
    );
    assert_eq!(d.terminate(), Some(0));

    // Second boot: an active token exists, nothing generated or printed.
    let mut d = Daemon::start(&base_env(&url));
    d.wait_ready_status(200, Duration::from_secs(10));
    assert!(!d.stdout().contains("KICI Admin Token"));
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM admin_tokens"), "1");
    assert_eq!(d.terminate(), Some(0));

    // All tokens revoked: the next boot generates a new one.
    pg.psql(&url, "UPDATE admin_tokens SET revoked = true");
    let d = Daemon::start(&base_env(&url));
    assert!(d
        .stdout_with("KICI Admin Token: ", Duration::from_secs(5))
        .contains("KICI Admin Token: "));
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM admin_tokens WHERE NOT revoked"),
        "1"
    );
}

#[test]
fn bootstrap_token_from_env_is_upserted_and_never_printed() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let first = "a".repeat(64);
    let mut env = base_env(&url);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), first.clone()));
    let mut d = Daemon::start(&env);
    assert!(
        !d.stdout().contains("KICI Admin Token"),
        "env token must not be echoed"
    );
    assert!(!d.stderr().contains(&first), "env token must not be logged");
    assert_eq!(
        pg.psql(
            &url,
            "SELECT token_hash, role FROM admin_tokens WHERE label = 'bootstrap'"
        ),
        format!("{}|owner", crypto::hash_token(&first))
    );
    assert_eq!(d.terminate(), Some(0));

    // A changed env token replaces the bootstrap row's hash; no second row.
    let second = "b".repeat(64);
    env.retain(|(k, _)| k != "KICI_BOOTSTRAP_ADMIN_TOKEN");
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), second.clone()));
    let mut d = Daemon::start(&env);
    assert_eq!(
        pg.psql(&url, "SELECT count(*), min(token_hash) FROM admin_tokens"),
        format!("1|{}", crypto::hash_token(&second))
    );
    assert_eq!(d.terminate(), Some(0));

    // Another token labelled "bootstrap" (the API refuses the label now; older databases may
    // have one) keeps its own hash and role: only the first bootstrap row follows the env.
    pg.psql(
        &url,
        "INSERT INTO admin_tokens (token_hash, label, role, created_at) \
         VALUES ('other-hash', 'bootstrap', 'auditor', now() + interval '1 second')",
    );
    let mut d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    assert_eq!(
        pg.psql(
            &url,
            "SELECT token_hash, role FROM admin_tokens WHERE label = 'bootstrap' ORDER BY created_at"
        ),
        format!("{}|owner\nother-hash|auditor", crypto::hash_token(&second))
    );
    assert_eq!(d.terminate(), Some(0));
    pg.psql(
        &url,
        "DELETE FROM admin_tokens WHERE token_hash = 'other-hash'",
    );

    // A revoked bootstrap row stays revoked, with a warning.
    pg.psql(&url, "UPDATE admin_tokens SET revoked = true");
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    assert!(d.stderr().contains("revoked"), "{}", d.stderr());
    assert_eq!(pg.psql(&url, "SELECT revoked FROM admin_tokens"), "t");
}
