//! Configuration errors through the real binary: exit code 1, every problem in one report, each
//! naming its variable and the accepted form, secrets never echoed.

use crate::support;

use support::daemon::*;

fn run(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = cli(&["orchestrator", "run"], &env);
    (out.status.code(), stderr(&out))
}

const VALID: &[(&str, &str)] = &[
    ("KICI_MODE", "independent"),
    (
        "KICI_DATABASE_URL",
        "postgresql://kici:dbsecret@127.0.0.1:1/kici",
    ),
    ("KICI_SECRET_KEY", TEST_KEY),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = VALID
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .cloned()
        .collect();
    v.extend_from_slice(extra);
    v
}

#[test]
fn a_bad_secret_key_names_the_variable_and_both_forms() {
    let (code, err) = run(&[("KICI_SECRET_KEY", "abc")]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("Error: Configuration validation failed:\n"),
        "{err}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("KICI_SECRET_KEY"))
        .expect("a line for KICI_SECRET_KEY");
    assert!(
        line.contains("64 hex characters") && line.contains("base64 of exactly 32 bytes"),
        "{line}"
    );
    // Everything else that is wrong is reported in the same run.
    assert!(err.contains("  - KICI_DATABASE_URL: is required"), "{err}");
    assert!(
        err.contains("  - KICI_PLATFORM_URL: is required when KICI_MODE is platform or hybrid"),
        "{err}"
    );
    assert!(
        err.contains("  - KICI_PLATFORM_TOKEN: is required when KICI_MODE is platform or hybrid"),
        "{err}"
    );
}

#[test]
fn unknown_variables_get_a_did_you_mean_hint_unless_dev() {
    let (code, err) = run(&with(&[("KICI_PROT", "1")]));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("  - KICI_PROT: unknown variable (did you mean KICI_PORT?)"),
        "{err}"
    );
    assert!(err.contains("KICI_DEV=true"), "{err}");
    let (_, err) = run(&with(&[("KICI_ZZZZZZZZZZ", "1")]));
    assert!(
        err.contains("KICI_ZZZZZZZZZZ: unknown variable (no similar known name)"),
        "{err}"
    );

    // With KICI_DEV=true it is only a warning: start goes on (and fails later on the unreachable
    // DB).
    let (code, err) = run(&with(&[("KICI_PROT", "1"), ("KICI_DEV", "true")]));
    assert_eq!(code, Some(1));
    assert!(!err.contains("Configuration validation failed"), "{err}");
    assert!(
        err.contains("KICI_PROT") && err.contains("did you mean KICI_PORT?"),
        "{err}"
    );
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(!err.contains("dbsecret"), "database password leaked: {err}");
}

#[test]
fn every_rule_has_its_message() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("KICI_MODE", "standalone")],
            "KICI_MODE: must be one of platform, hybrid, independent, got \"standalone\"",
        ),
        (
            &[("KICI_PORT", "http")],
            "KICI_PORT: must be a whole number from 0 to 65535, got \"http\"",
        ),
        (
            &[("KICI_PORT", "70000")],
            "KICI_PORT: must be a whole number from 0 to 65535, got \"70000\"",
        ),
        (
            &[("KICI_DATABASE_URL", "mysql://x")],
            "KICI_DATABASE_URL: must be a PostgreSQL URL",
        ),
        (
            &[("KICI_MODE", "hybrid")],
            "KICI_PLATFORM_URL: is required when KICI_MODE is platform or hybrid",
        ),
        (
            &[
                ("KICI_MODE", "platform"),
                ("KICI_PLATFORM_URL", "ftp://p"),
                ("KICI_PLATFORM_TOKEN", "t"),
            ],
            "KICI_PLATFORM_URL:",
        ),
        (
            &[("KICI_STORAGE_TYPE", "s3")],
            "KICI_STORAGE_BUCKET: is required when KICI_STORAGE_TYPE is s3",
        ),
        (&[("KICI_STORAGE_TYPE", "gcs")], "KICI_STORAGE_TYPE:"),
        (
            &[("KICI_STORAGE_TYPE", "filesystem")],
            "KICI_STORAGE_FS_PATH: is required when KICI_STORAGE_TYPE is filesystem",
        ),
        (
            &[
                ("KICI_STORAGE_TYPE", "filesystem"),
                ("KICI_STORAGE_FS_PATH", "rel/dir"),
            ],
            "KICI_STORAGE_FS_PATH: must be an absolute path, got \"rel/dir\"",
        ),
        (
            &[
                ("KICI_STORAGE_TYPE", "s3"),
                ("KICI_STORAGE_BUCKET", "b"),
                ("KICI_STORAGE_REGION", "r"),
                ("KICI_STORAGE_FORCE_PATH_STYLE", "yes"),
            ],
            "KICI_STORAGE_FORCE_PATH_STYLE:",
        ),
        (
            &[("KICI_CACHE_TTL_DAYS", "7")],
            "KICI_CACHE_TTL_DAYS: must be at least 30 (days), got \"7\"",
        ),
        (&[("KICI_LOG_LEVEL", "loud")], "KICI_LOG_LEVEL:"),
        (&[("KICI_BASE_PATH", "api")], "KICI_BASE_PATH:"),
        (
            &[("KICI_BIND_ADDRESS", "localhost:80")],
            "KICI_BIND_ADDRESS:",
        ),
        (
            &[("KICI_SECRET_KEY_OLD", "short")],
            "KICI_SECRET_KEY_OLD: must be 64 hex characters or base64 of exactly 32 bytes",
        ),
        (
            &[
                ("KICI_SECRET_KEY", ""),
                ("KICI_SECRET_KEY_FILE", "/nonexistent/kici.key"),
            ],
            "KICI_SECRET_KEY_FILE: cannot read file '/nonexistent/kici.key'",
        ),
        (
            &[("KICI_SECRET_KEY", "")],
            "KICI_SECRET_KEY: is required: 64 hex characters or base64 of exactly 32 bytes",
        ),
    ];
    for (extra, expected) in cases {
        let (code, err) = run(&with(extra));
        assert_eq!(code, Some(1), "for {extra:?}: {err}");
        assert!(
            err.starts_with("Error: Configuration validation failed:\n"),
            "for {extra:?}: {err}"
        );
        assert!(
            err.contains(&format!("  - {expected}")),
            "for {extra:?} expected {expected:?} in:\n{err}"
        );
    }
}

#[test]
fn secrets_are_never_echoed() {
    let (code, err) = run(&[
        ("KICI_MODE", "hybrid"),
        (
            "KICI_DATABASE_URL",
            "postgresql://u:dbpassword123@127.0.0.1:1/k",
        ),
        ("KICI_SECRET_KEY", "secretkeyvalue123"),
        ("KICI_SECRET_KEY_OLD", "oldkeyvalue123"),
        ("KICI_BOOTSTRAP_ADMIN_TOKEN", "bootstraptoken123"),
        ("KICI_PLATFORM_TOKEN", "platformtoken123"),
        ("KICI_PORT", "bad"),
    ]);
    assert_eq!(code, Some(1));
    for secret in [
        "dbpassword123",
        "secretkeyvalue123",
        "oldkeyvalue123",
        "bootstraptoken123",
        "platformtoken123",
    ] {
        assert!(!err.contains(secret), "{secret} leaked in:\n{err}");
    }
}

#[test]
fn version_and_help() {
    for flag in ["--version", "-V", "--cli-version"] {
        let out = cli(&[flag], &[]);
        assert!(out.status.success());
        assert!(
            stdout(&out).starts_with(&format!("kici-admin {}", env!("CARGO_PKG_VERSION"))),
            "{}",
            stdout(&out)
        );
    }
    for args in [
        &["--help"][..],
        &["orchestrator", "--help"],
        &["orchestrator", "run", "--help"],
        &["db", "migrate", "--help"],
    ] {
        let out = cli(args, &[]);
        assert!(out.status.success(), "{args:?}");
        assert!(
            stdout(&out).starts_with("Usage: kici-admin"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
    let out = cli(&["bogus"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_cache_ttl_below_30_days_is_refused_with_the_reason() {
    let (code, err) = run(&with(&[("KICI_CACHE_TTL_DAYS", "10")]));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("KICI_CACHE_TTL_DAYS: must be at least 30 (days), got \"10\": the orchestrator relies on cache freshness"),
        "{err}"
    );
    assert!(err.contains("causing cache misses"), "{err}");
}
