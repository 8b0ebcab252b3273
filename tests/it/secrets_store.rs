//! The workflow-secret store against a real PostgreSQL, without a daemon: sealed rows, scopes,
//! environments with bindings and variables, the audit log; and the `pg_dump` check that finds a
//! plaintext value.

use crate::support;

use kici_orchestrator::{
    crypto::{SecretBox, SecretKey},
    secrets::{
        audit::{self, Actor, AuditEntry, AuditQuery, Outcome},
        store::{self, EnvKind, EnvironmentSpec},
        ORG_WIDE_SCOPE,
    },
};
use postgres::{Client, NoTls};
use serde_json::json;
use support::{
    daemon::{cli, stderr, TEST_KEY},
    pg::PgCluster,
};

fn migrated() -> (String, Client) {
    let url = PgCluster::shared().create_database();
    let out = cli(&["db", "migrate", "--database-url", &url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    (url.clone(), Client::connect(&url, NoTls).unwrap())
}

fn sbox() -> SecretBox {
    SecretBox::new(SecretKey::parse(TEST_KEY).unwrap(), None)
}

#[test]
fn store_seals_lists_opens_and_keeps_environments() {
    let (url, mut c) = migrated();
    let sbox = sbox();
    store::put_secret(
        &mut c,
        &sbox,
        "acme",
        "aws/prod",
        "DB_PASSWORD",
        "store-pw-1",
    )
    .unwrap();
    store::put_secret(&mut c, &sbox, "acme", "aws/prod", "API_KEY", "store-key-1").unwrap();
    store::put_secret(
        &mut c,
        &sbox,
        "acme",
        ORG_WIDE_SCOPE,
        "NPM_TOKEN",
        "store-npm-1",
    )
    .unwrap();
    store::put_secret(
        &mut c,
        &sbox,
        "other",
        "aws/prod",
        "DB_PASSWORD",
        "store-pw-2",
    )
    .unwrap();
    // An upsert replaces the value.
    store::put_secret(&mut c, &sbox, "acme", "aws/prod", "API_KEY", "store-key-2").unwrap();

    assert_eq!(
        store::scopes(&mut c, "acme").unwrap(),
        [ORG_WIDE_SCOPE, "aws/prod"]
    );
    assert_eq!(
        store::keys(&mut c, "acme", "aws/prod").unwrap(),
        ["API_KEY", "DB_PASSWORD"]
    );
    let sealed = store::sealed_of_org(&mut c, "acme").unwrap();
    let names: Vec<_> = sealed
        .iter()
        .map(|s| format!("{}:{}", s.scope, s.key))
        .collect();
    assert_eq!(
        names,
        [
            "__org__:NPM_TOKEN",
            "aws/prod:API_KEY",
            "aws/prod:DB_PASSWORD"
        ]
    );
    let api = &store::sealed_in_scope(&mut c, "acme", "aws/prod").unwrap()[0];
    assert!(api.sealed.starts_with("v1:"), "sealed, not plaintext");
    assert_eq!(store::open(&sbox, "acme", api).unwrap(), "store-key-2");
    // Bound to its owner: the same sealed text under another org does not open, and says which.
    let err = store::open(&sbox, "other", api).unwrap_err();
    assert_eq!((err.org.as_str(), err.key.as_str()), ("other", "API_KEY"));
    assert!(err.to_string().contains("Failed to decrypt"), "{err}");
    assert!(store::delete_secret(&mut c, "acme", "aws/prod", "API_KEY").unwrap());
    assert!(!store::delete_secret(&mut c, "acme", "aws/prod", "API_KEY").unwrap());

    let prod = EnvironmentSpec {
        name: "prod".into(),
        ..Default::default()
    };
    assert!(
        store::upsert_environment(&mut c, "acme", &prod, Some("tok"))
            .unwrap()
            .1
    );
    let preview = EnvironmentSpec {
        name: "preview".into(),
        kind: Some(EnvKind::Glob("preview-*".into())),
        allow_untrusted: Some(true),
        ..Default::default()
    };
    let (preview_id, created) = store::upsert_environment(&mut c, "acme", &preview, None).unwrap();
    assert!(created);
    // Upsert by name: not created again, given settings change, others stay.
    let again = EnvironmentSpec {
        name: "preview".into(),
        enabled: Some(false),
        ..Default::default()
    };
    assert_eq!(
        store::upsert_environment(&mut c, "acme", &again, None).unwrap(),
        (preview_id, false)
    );
    assert_eq!(
        store::bind(&mut c, "acme", "prod", "aws/prod", "**").unwrap(),
        Some(true)
    );
    assert_eq!(
        store::bind(&mut c, "acme", "prod", "aws/prod", "**").unwrap(),
        Some(false)
    );
    assert_eq!(
        store::bind(&mut c, "acme", "prod", "shared/**", "**").unwrap(),
        Some(true)
    );
    assert_eq!(
        store::bind(&mut c, "acme", "nope", "x", "**").unwrap(),
        None
    );
    assert_eq!(
        store::set_variable(&mut c, "acme", "prod", "REGION", "eu-west-1", None).unwrap(),
        Some(())
    );
    assert_eq!(
        store::set_variable(&mut c, "acme", "nope", "A", "b", None).unwrap(),
        None
    );

    let envs = store::environments(&mut c, "acme").unwrap();
    assert_eq!(envs.len(), 2);
    let (preview, prod) = (&envs[0], &envs[1]);
    assert_eq!(preview.kind, EnvKind::Glob("preview-*".into()));
    assert!(preview.allow_untrusted && !preview.enabled);
    assert!(!prod.allow_untrusted && prod.enabled);
    assert_eq!(prod.created_by.as_deref(), Some("tok"));
    let patterns: Vec<_> = prod
        .bindings
        .iter()
        .map(|b| b.scope_pattern.as_str())
        .collect();
    assert_eq!(patterns, ["aws/prod", "shared/**"]);
    assert_eq!(prod.variables[0].key, "REGION");
    assert_eq!(prod.variables[0].value, "eu-west-1");
    assert!(store::environments(&mut c, "other").unwrap().is_empty());
    assert_eq!(
        store::unbind(&mut c, "acme", "prod", "shared/**", "**").unwrap(),
        Some(true)
    );
    assert_eq!(
        store::delete_variable(&mut c, "acme", "prod", "REGION").unwrap(),
        Some(true)
    );
    let prod = store::environment(&mut c, "acme", "prod").unwrap().unwrap();
    assert_eq!(prod.bindings.len(), 1);
    assert!(prod.variables.is_empty());
    assert!(store::delete_environment(&mut c, "acme", "preview").unwrap());
    assert!(store::environment(&mut c, "acme", "preview")
        .unwrap()
        .is_none());

    audit::record(
        &mut c,
        &AuditEntry {
            action: audit::RESOLVE,
            actor: Actor::Orchestrator("orchestrator:test"),
            org: Some("acme"),
            context: "prod",
            routing_key: Some("github:1"),
            keys: &["DB_PASSWORD".to_owned()],
            outcome: Outcome::Allowed,
            run_id: Some("0190a0a0-0000-7000-8000-000000000001"),
            job_id: Some("0190a0a0-0000-7000-8000-000000000002"),
            metadata: json!({"orgId": "acme"}),
        },
    )
    .unwrap();
    let q = AuditQuery {
        org: Some("acme".into()),
        limit: 10,
        ..Default::default()
    };
    let rows = audit::query(&mut c, &q).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["action"], "resolve");
    assert_eq!(rows[0]["role"], "system");
    assert_eq!(rows[0]["token_label"], "orchestrator");
    assert_eq!(rows[0]["user_id"], "orchestrator:test");
    assert_eq!(rows[0]["secret_keys"], json!(["DB_PASSWORD"]));
    assert_eq!(rows[0]["run_id"], "0190a0a0-0000-7000-8000-000000000001");

    PgCluster::shared().assert_dump_lacks(&url, &["store-pw-1", "store-key-2", "store-npm-1"]);
}

#[test]
#[should_panic(expected = "plaintext secret found in the database dump")]
fn the_dump_check_finds_a_plaintext_value() {
    let (url, _c) = migrated();
    let pg = PgCluster::shared();
    pg.psql(
        &url,
        "CREATE TABLE leak (v text); INSERT INTO leak VALUES ('leaked-plaintext-value')",
    );
    pg.assert_dump_lacks(&url, &["leaked-plaintext-value"]);
}
