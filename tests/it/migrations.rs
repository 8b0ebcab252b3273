//! `db migrate [--status] [--json]` against a real PostgreSQL, the migration lock with four
//! daemons starting at once, refusal of a changed migration, and acceptance of the checksums
//! earlier builds recorded.

use crate::support;

use std::{thread, time::Duration};

use support::{daemon::*, pg::PgCluster};

fn db_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["db", "migrate"];
    v.extend_from_slice(extra);
    v.extend_from_slice(&["--database-url", url]);
    v
}

#[test]
fn status_migrate_status_round_trip() {
    let url = PgCluster::shared().create_database();
    let out = cli(&db_args(&url, &["--status"]), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l.starts_with("  PENDING  "), "line {l:?}");
        assert!(l.ends_with(" -"), "line {l:?}");
    }
    assert!(text.contains("0001_initial"));

    let json = cli(&db_args(&url, &["--status", "--json"]), &[]);
    let v: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("--status --json is JSON");
    assert!(v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["status"] == "pending" && m.get("appliedAt").is_none()));

    let out = cli(&db_args(&url, &[]), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("Applied {} migration(s).\n", lines.len())),
        "{text}"
    );
    assert!(text.contains("  OK  0001_initial\n"), "{text}");

    let out = cli(&db_args(&url, &["--status"]), &[]);
    for l in stdout(&out).lines() {
        assert!(l.starts_with("  OK       "), "line {l:?}");
        let at = l.rsplit(' ').next().unwrap();
        assert!(
            at.len() == 24 && at.ends_with('Z') && at.contains('T'),
            "applied time {at:?}"
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&cli(&db_args(&url, &["--status", "--json"]), &[]).stdout).unwrap();
    assert!(v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["status"] == "applied" && m["appliedAt"].is_string()));

    let again = cli(&db_args(&url, &[]), &[]);
    assert_eq!(stdout(&again), "Database schema is up to date.\n");
    let v: serde_json::Value =
        serde_json::from_slice(&cli(&db_args(&url, &["--json"]), &[]).stdout).unwrap();
    assert_eq!(v, serde_json::json!({ "applied": 0, "migrations": [] }));
}

#[test]
fn database_url_comes_from_the_environment_too() {
    let url = PgCluster::shared().create_database();
    let env = vec![("KICI_DATABASE_URL".to_owned(), url)];
    let out = cli(&["db", "migrate", "--status"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("PENDING"));
    // `--database-url=value` works as well as `--database-url value`.
    let out = cli(
        &["db", "migrate", &format!("--database-url={}", env[0].1)],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_or_unreachable_database_is_a_clear_error() {
    let out = cli(&["db", "migrate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error: db migrate needs a database: pass --database-url"),
        "{}",
        stderr(&out)
    );

    let out = cli(
        &[
            "db",
            "migrate",
            "--database-url",
            "postgresql://postgres:hunter2@127.0.0.1:1/x",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("Error: cannot connect to PostgreSQL at "),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "password leaked: {err}");
}

#[test]
fn four_daemons_on_an_empty_database_migrate_once_and_all_become_ready() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let env = base_env(&url);
    let starters: Vec<_> = (0..4)
        .map(|_| {
            let env = env.clone();
            thread::spawn(move || Daemon::start(&env))
        })
        .collect();
    let daemons: Vec<Daemon> = starters.into_iter().map(|t| t.join().unwrap()).collect();
    for d in &daemons {
        let r = d.wait_ready_status(200, Duration::from_secs(10));
        assert_eq!(r.json()["checks"]["database"], true);
    }
    let rows = pg.psql(
        &url,
        "SELECT name, count(*) FROM schema_migrations GROUP BY name ORDER BY name",
    );
    let expected: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".sql")
                    .to_owned()
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|n| format!("{n}|1"))
            .collect();
    assert_eq!(
        rows.lines().map(str::to_owned).collect::<Vec<_>>(),
        expected
    );
    // Exactly one of them applied the migrations; the others found nothing pending.
    let applied = daemons
        .iter()
        .filter(|d| d.stderr().contains("0001_initial ... OK"))
        .count();
    assert_eq!(applied, 1);
    // And exactly one bootstrap token was generated and printed, by one of the four.
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM admin_tokens"), "1");
    // stdout is read by its own thread: give a printed token time to arrive.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let printed = daemons
        .iter()
        .filter(|d| d.stdout().contains("KICI Admin Token: "))
        .count();
    assert_eq!(printed, 1);
}

#[test]
fn a_changed_migration_refuses_start_and_migrate() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    assert!(cli(&db_args(&url, &[]), &[]).status.success());
    // The file "changed" after it was applied: its recorded checksum no longer matches.
    pg.psql(&url, "UPDATE schema_migrations SET checksum = 'not-the-real-checksum' WHERE name = '0001_initial'");

    let out = cli(&db_args(&url, &[]), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("migration 0001_initial was changed after it was applied"),
        "{}",
        stderr(&out)
    );

    let status = cli(&db_args(&url, &["--status"]), &[]);
    assert_eq!(status.status.code(), Some(1));
    assert!(
        stdout(&status).contains("  CHANGED  0001_initial"),
        "{}",
        stdout(&status)
    );

    let (code, _, err) = Daemon::try_start(&base_env(&url))
        .err()
        .expect("daemon must refuse");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("migration 0001_initial was changed after it was applied"),
        "{err}"
    );
}

#[test]
fn auto_migrate_false_refuses_pending_then_starts_after_db_migrate() {
    let url = PgCluster::shared().create_database();
    let mut env = base_env(&url);
    env.push(("KICI_AUTO_MIGRATE".into(), "false".into()));
    let (code, _, err) = Daemon::try_start(&env)
        .err()
        .expect("must refuse with pending migrations");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("pending") && err.contains("kici-admin db migrate"),
        "{err}"
    );
    assert!(
        err.contains("Auto-migrate disabled (KICI_AUTO_MIGRATE=false)"),
        "{err}"
    );

    assert!(cli(&db_args(&url, &[]), &[]).status.success());
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    assert!(!d.stderr().contains("Acquiring migration lock"));
}

#[test]
fn source_writes_notify_their_routing_key() {
    use postgres::fallible_iterator::FallibleIterator;
    let pg = PgCluster::shared();
    let url = pg.create_database();
    assert!(cli(&db_args(&url, &[]), &[]).status.success());
    let mut listener = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    listener
        .batch_execute("LISTEN sources_change; LISTEN generic_sources_change")
        .unwrap();
    // One transaction each: PostgreSQL folds identical notifications within a transaction.
    for sql in [
        "INSERT INTO sources (provider, name, routing_key) VALUES ('github', 'a', 'github:1')",
        "UPDATE sources SET name = 'b' WHERE routing_key = 'github:1'",
        "DELETE FROM sources WHERE routing_key = 'github:1'",
        "INSERT INTO generic_webhook_sources (id, customer_id, name, routing_key)
           VALUES ('6f1c0000-0000-4000-8000-000000000002', 'org', 'n', 'generic:org:6f1c0000-0000-4000-8000-000000000002')",
        "UPDATE generic_webhook_sources SET enabled = false",
        "DELETE FROM generic_webhook_sources",
    ] {
        pg.psql(&url, sql);
    }
    let mut got = Vec::new();
    let mut n = listener.notifications();
    let mut it = n.timeout_iter(Duration::from_secs(5));
    while got.len() < 6 {
        match it.next().unwrap() {
            Some(note) => got.push(format!("{}={}", note.channel(), note.payload())),
            None => break,
        }
    }
    let generic = "generic_sources_change=generic:org:6f1c0000-0000-4000-8000-000000000002";
    assert_eq!(
        got,
        [
            "sources_change=github:1",
            "sources_change=github:1",
            "sources_change=github:1",
            generic,
            generic,
            generic
        ]
    );
}

#[test]
fn a_database_with_the_legacy_raw_text_checksums_still_starts() {
    use kici_orchestrator::db::checksum::LEGACY;
    let pg = PgCluster::shared();
    let url = pg.create_database();
    assert!(cli(&db_args(&url, &[]), &[]).status.success());
    // What builds before the comment-insensitive checksum recorded: the SHA-256 of each file.
    for (name, sum) in LEGACY {
        pg.psql(
            &url,
            &format!("UPDATE schema_migrations SET checksum = '{sum}' WHERE name = '{name}'"),
        );
    }
    let legacy: Vec<String> = LEGACY.iter().map(|(_, sum)| format!("'{sum}'")).collect();
    assert_eq!(
        pg.psql(
            &url,
            &format!(
                "SELECT count(*) FROM schema_migrations WHERE checksum IN ({})",
                legacy.join(",")
            )
        ),
        LEGACY.len().to_string()
    );

    // Every migration reported applied, none changed; nothing left to apply; the daemon starts.
    let out = cli(&db_args(&url, &["--status"]), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for (name, _) in LEGACY {
        assert!(text.contains(&format!("  OK       {name}")), "{text}");
    }
    for l in text.lines() {
        assert!(l.starts_with("  OK       "), "line {l:?}");
    }
    let out = cli(&db_args(&url, &[]), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("  OK  0001_initial"),
        "{}",
        stdout(&out)
    );

    let d = Daemon::start(&base_env(&url));
    d.wait_ready_status(200, Duration::from_secs(10));
}
