use super::vars::{levenshtein, KNOWN};
use super::*;
use std::net::Ipv4Addr;

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const DB_URL: &str = "postgresql://kici:dbpw@127.0.0.1:5432/kici";

/// A minimal valid independent configuration, with `extra` added or overriding (an empty
/// value unsets, as in an env file).
pub(super) fn vars(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let base = [
        ("KICI_MODE", "independent"),
        ("KICI_DATABASE_URL", DB_URL),
        ("KICI_SECRET_KEY", KEY_HEX),
    ];
    base.iter()
        .chain(extra)
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

pub(super) fn ok(extra: &[(&str, &str)]) -> Loaded {
    match Config::from_vars(vars(extra)) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

pub(super) fn err(extra: &[(&str, &str)]) -> ConfigError {
    match Config::from_vars(vars(extra)) {
        Ok(loaded) => panic!("expected problems, got {:?}", loaded.config),
        Err(e) => e,
    }
}

fn key_error(input: &str) -> String {
    match SecretKey::parse(input) {
        Ok(_) => panic!("{input:?} should not parse as a key"),
        Err(e) => e.to_string(),
    }
}

/// A file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, content: &str) -> TempFile {
        let name = format!("kici-config-test-{}-{tag}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, content).expect("write temp file");
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8 here")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn minimal_independent_config_gets_the_defaults() {
    let loaded = ok(&[]);
    let c = &loaded.config;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(c.mode, Mode::Independent);
    assert_eq!(c.database_url, DB_URL);
    assert!(c.secret_key_old.is_none());
    assert!(c.auto_migrate);
    assert_eq!(
        (
            c.bootstrap_admin_token.as_deref(),
            c.platform_url.as_deref()
        ),
        (None, None)
    );
    assert_eq!(c.port, 4000);
    assert_eq!(c.bind_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(c.base_path, "");
    assert_eq!(c.log_level, LevelFilter::Info);
    assert!(c.storage.is_none());
    assert_eq!(
        (c.cache_ttl_days, c.event_log_max_payload_bytes),
        (30, 5_242_880)
    );
    assert_eq!(c.max_jobs_per_run, 256);
    assert_eq!(c.log_retention_days, 30);
    assert!(c.webhook_public_url.is_none() && !c.dev);
}

#[test]
fn explicit_values_are_used() {
    let loaded = ok(&[
        ("KICI_MODE", "hybrid"),
        ("KICI_PLATFORM_URL", "wss://api.kici.dev/ws"),
        ("KICI_PLATFORM_TOKEN", "kici_ok_x"),
        ("KICI_PORT", "0"),
        ("KICI_BIND_ADDRESS", "::1"),
        ("KICI_LOG_LEVEL", "trace"),
        ("KICI_AUTO_MIGRATE", "false"),
        ("KICI_CACHE_TTL_DAYS", "45"),
        ("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES", "1024"),
        ("KICI_MAX_JOBS_PER_RUN", "1000"),
        ("KICI_LOG_RETENTION_DAYS", "7"),
        ("KICI_WEBHOOK_PUBLIC_URL", "https://ci.example.com"),
        ("KICI_DATABASE_URL", "host=/run/postgresql dbname=kici"),
        ("KICI_DEV", "true"),
    ]);
    let c = loaded.config;
    assert_eq!(
        (c.mode, c.port, c.log_level),
        (Mode::Hybrid, 0, LevelFilter::Trace)
    );
    assert_eq!(c.platform_url.as_deref(), Some("wss://api.kici.dev/ws"));
    assert_eq!(c.platform_token.as_deref(), Some("kici_ok_x"));
    assert_eq!(c.bind_address.to_string(), "::1");
    assert!(!c.auto_migrate && c.dev);
    assert_eq!(
        (c.cache_ttl_days, c.event_log_max_payload_bytes),
        (45, 1024)
    );
    assert_eq!(c.max_jobs_per_run, 1000);
    assert_eq!(c.log_retention_days, 7);
    assert_eq!(
        c.webhook_public_url.as_deref(),
        Some("https://ci.example.com")
    );
}

#[rustfmt::skip]
#[test]
fn each_rule_reports_its_own_message() {
    let fs = [("KICI_STORAGE_TYPE", "filesystem")];
    let s3 = [
        ("KICI_STORAGE_TYPE", "s3"),
        ("KICI_STORAGE_BUCKET", "b"),
        ("KICI_STORAGE_REGION", "r"),
    ];
    let platform_required = "is required when KICI_MODE is platform or hybrid (the default mode is platform; set KICI_MODE=independent to run without the Platform)";
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![("KICI_MODE", "standalone")], r#"KICI_MODE: must be one of platform, hybrid, independent, got "standalone""#.into()),
        (vec![("KICI_DATABASE_URL", "")], "KICI_DATABASE_URL: is required (a PostgreSQL URL such as postgresql://user:password@127.0.0.1:5432/kici)".into()),
        (vec![("KICI_DATABASE_URL", "mysql://u:pw@h/db")], r#"KICI_DATABASE_URL: must be a PostgreSQL URL such as postgresql://user:password@127.0.0.1:5432/kici, or a libpq key=value string with host= or dbname=, got "mysql://u:***@h/db""#.into()),
        (vec![("KICI_SECRET_KEY", "abc")], format!("KICI_SECRET_KEY: {}", key_error("abc"))),
        (vec![("KICI_SECRET_KEY", "")], format!("KICI_SECRET_KEY: {SECRET_KEY_REQUIRED}")),
        (vec![("KICI_SECRET_KEY", "  ")], format!("KICI_SECRET_KEY: {SECRET_KEY_REQUIRED}")),
        (vec![("KICI_SECRET_KEY_FILE", "/k")], "KICI_SECRET_KEY: cannot be set together with KICI_SECRET_KEY_FILE; remove one of them (removing KICI_SECRET_KEY keeps the key out of the process environment)".into()),
        (vec![("KICI_SECRET_KEY_OLD", "abc")], format!("KICI_SECRET_KEY_OLD: {}", key_error("abc"))),
        (vec![("KICI_MODE", ""), ("KICI_PLATFORM_TOKEN", "t")], format!("KICI_PLATFORM_URL: {platform_required}")),
        (vec![("KICI_MODE", "hybrid"), ("KICI_PLATFORM_URL", "wss://p/ws")], format!("KICI_PLATFORM_TOKEN: {platform_required}")),
        (vec![("KICI_MODE", "hybrid"), ("KICI_PLATFORM_URL", "ftp://p"), ("KICI_PLATFORM_TOKEN", "t")], r#"KICI_PLATFORM_URL: must be a URL starting with ws://, wss://, http:// or https://, got "ftp://p""#.into()),
        (vec![("KICI_PORT", "http")], r#"KICI_PORT: must be a whole number from 0 to 65535, got "http""#.into()),
        (vec![("KICI_PORT", "65536")], r#"KICI_PORT: must be a whole number from 0 to 65535, got "65536""#.into()),
        (vec![("KICI_PORT", "+80")], r#"KICI_PORT: must be a whole number from 0 to 65535, got "+80""#.into()),
        (vec![("KICI_BIND_ADDRESS", "localhost")], r#"KICI_BIND_ADDRESS: must be an IP address such as 0.0.0.0, 127.0.0.1 or ::, got "localhost""#.into()),
        (vec![("KICI_LOG_LEVEL", "verbose")], r#"KICI_LOG_LEVEL: must be one of trace, debug, info, warn, error, got "verbose""#.into()),
        (vec![("KICI_STORAGE_TYPE", "minio")], r#"KICI_STORAGE_TYPE: must be one of s3, filesystem, got "minio""#.into()),
        (vec![s3[0], s3[2]], "KICI_STORAGE_BUCKET: is required when KICI_STORAGE_TYPE is s3".into()),
        (vec![s3[0], s3[1]], "KICI_STORAGE_REGION: is required when KICI_STORAGE_TYPE is s3 (any value such as us-east-1 works for non-AWS stores like MinIO)".into()),
        ([&s3[..], &[("KICI_STORAGE_FORCE_PATH_STYLE", "yes")]].concat(), r#"KICI_STORAGE_FORCE_PATH_STYLE: must be one of true, false, got "yes""#.into()),
        ([&s3[..], &[("KICI_STORAGE_ENDPOINT", "minio:9000")]].concat(), r#"KICI_STORAGE_ENDPOINT: must be a URL starting with http:// or https://, got "minio:9000""#.into()),
        ([&s3[..], &[("KICI_STORAGE_EXTERNAL_ENDPOINT", "http://")]].concat(), r#"KICI_STORAGE_EXTERNAL_ENDPOINT: must be a URL starting with http:// or https://, got "http://""#.into()),
        ([&s3[..], &[("KICI_STORAGE_UPLOAD_ENDPOINT", "s3://x")]].concat(), r#"KICI_STORAGE_UPLOAD_ENDPOINT: must be a URL starting with http:// or https://, got "s3://x""#.into()),
        (fs.to_vec(), "KICI_STORAGE_FS_PATH: is required when KICI_STORAGE_TYPE is filesystem".into()),
        ([&fs[..], &[("KICI_STORAGE_FS_PATH", "rel/dir")]].concat(), r#"KICI_STORAGE_FS_PATH: must be an absolute path, got "rel/dir""#.into()),
        ([&fs[..], &[("KICI_STORAGE_FS_PATH", "/d"), ("KICI_STORAGE_FS_BASE_URL", "x")]].concat(), r#"KICI_STORAGE_FS_BASE_URL: must be a URL starting with http:// or https://, got "x""#.into()),
        (vec![("KICI_CACHE_TTL_DAYS", "7")], format!(r#"KICI_CACHE_TTL_DAYS: must be at least 30 (days), got "7": {}"#, crate::storage::lifecycle::TTL_REASON)),
        (vec![("KICI_CACHE_TTL_DAYS", "a month")], r#"KICI_CACHE_TTL_DAYS: must be a whole number of days, at least 30, got "a month""#.into()),
        (vec![("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES", "0")], r#"KICI_EVENT_LOG_MAX_PAYLOAD_BYTES: must be a whole number of bytes greater than 0, got "0""#.into()),
        (vec![("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES", "5MB")], r#"KICI_EVENT_LOG_MAX_PAYLOAD_BYTES: must be a whole number of bytes greater than 0, got "5MB""#.into()),
        (vec![("KICI_LOG_RETENTION_DAYS", "0")], r#"KICI_LOG_RETENTION_DAYS: must be a whole number of days greater than 0, got "0""#.into()),
        (vec![("KICI_LOG_RETENTION_DAYS", "a month")], r#"KICI_LOG_RETENTION_DAYS: must be a whole number of days greater than 0, got "a month""#.into()),
        (vec![("KICI_MAX_JOBS_PER_RUN", "0")], r#"KICI_MAX_JOBS_PER_RUN: must be a whole number of jobs greater than 0, got "0""#.into()),
        (vec![("KICI_MAX_JOBS_PER_RUN", "lots")], r#"KICI_MAX_JOBS_PER_RUN: must be a whole number of jobs greater than 0, got "lots""#.into()),
        (vec![("KICI_WEBHOOK_PUBLIC_URL", "ci.example.com")], r#"KICI_WEBHOOK_PUBLIC_URL: must be a URL starting with http:// or https://, got "ci.example.com""#.into()),
    ];
    for (extra, expected) in cases {
        let e = err(&extra);
        assert_eq!(e.problems, vec![expected.clone()], "for {extra:?}");
        assert!(!e.unknown_present);
        assert_eq!(
            e.to_string(),
            format!("Configuration validation failed:\n  - {expected}")
        );
    }
}

#[test]
fn platform_mode_is_the_default_and_needs_url_and_token() {
    let e = err(&[("KICI_MODE", "")]);
    let names: Vec<&str> = e
        .problems
        .iter()
        .filter_map(|p| p.split(':').next())
        .collect();
    assert_eq!(names, ["KICI_PLATFORM_URL", "KICI_PLATFORM_TOKEN"]);
}

#[test]
fn an_invalid_mode_does_not_also_demand_platform_settings() {
    assert_eq!(err(&[("KICI_MODE", "Platform")]).problems.len(), 1);
}

#[test]
fn all_problems_are_reported_together() {
    let e = err(&[
        ("KICI_SECRET_KEY", "abc"),
        ("KICI_DATABASE_URL", ""),
        ("KICI_PORT", "x"),
    ]);
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "Configuration validation failed:");
    for name in ["KICI_DATABASE_URL", "KICI_SECRET_KEY", "KICI_PORT"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("  - {name}: "))),
            "{name} in {text}"
        );
    }
}

#[test]
fn unknown_variables_are_refused_with_a_suggestion() {
    let e = err(&[("KICI_PROT", "1"), ("KICI_FOO", "x")]);
    assert!(e.unknown_present);
    assert!(e
        .problems
        .contains(&"KICI_PROT: unknown variable (did you mean KICI_PORT?)".to_owned()));
    assert!(e
        .problems
        .contains(&"KICI_FOO: unknown variable (no similar known name)".to_owned()));
    assert!(e.to_string().ends_with(&format!("\n{DEV_HINT}")));
    assert!(!err(&[("KICI_PORT", "x")]).to_string().contains(DEV_HINT));
}

#[test]
fn dev_mode_downgrades_unknown_variables_to_warnings() {
    let loaded = ok(&[("KICI_PROT", "1"), ("KICI_DEV", "true")]);
    assert_eq!(
        loaded.warnings,
        ["KICI_PROT: unknown variable (did you mean KICI_PORT?)"]
    );
    let e = err(&[("KICI_PROT", "1"), ("KICI_DEV", "true"), ("KICI_PORT", "x")]);
    assert!(!e.unknown_present && e.problems.len() == 1, "{e}");
}

#[test]
fn harness_names_and_cold_store_knobs_are_not_unknown() {
    let names = [
        "KICI_E2E_RUN",
        "KICI_AGENT_ENV_FOO",
        "KICI_X_ENV_PROBE",
        "KICI_COLD_STORE_BUCKET",
    ];
    let extra: Vec<(&str, &str)> = names.iter().map(|n| (*n, "1")).collect();
    assert!(ok(&extra).warnings.is_empty());
    assert!(!is_known_var("KICI_COLD_STORE_") && !is_known_var("KICI_E2E_RUN"));
    assert!(
        is_known_var("KICI_PORT")
            && is_known_var("KICI_ADMIN_TOKEN")
            && !is_known_var("KICI_CONFIG")
    );
}

#[test]
fn known_list_is_sorted_and_unique() {
    assert!(
        KNOWN.windows(2).all(|w| w[0] < w[1]),
        "KNOWN must stay sorted for binary_search"
    );
    assert!(KNOWN.iter().all(|n| n.starts_with("KICI_")));
}

#[test]
fn suggestions_need_a_close_name() {
    assert_eq!(suggest("KICI_DATABSE_URL"), Some("KICI_DATABASE_URL"));
    assert_eq!(suggest("KICI_STORAGE_BUKET"), Some("KICI_STORAGE_BUCKET"));
    assert_eq!(suggest("KICI_QQQQQQQ"), None);
    assert_eq!(levenshtein("kitten", "sitting"), 3);
}

#[test]
fn secrets_never_appear_in_messages_or_debug() {
    let secret = "S3CRET-do-not-print";
    let file = TempFile::new("secret-content", secret);
    let e = err(&[
        ("KICI_SECRET_KEY", secret),
        ("KICI_SECRET_KEY_FILE_OLD", file.path()),
        ("KICI_BOOTSTRAP_ADMIN_TOKEN", secret),
        ("KICI_PLATFORM_TOKEN", secret),
        (
            "KICI_DATABASE_URL",
            &format!("mysql://kici:{secret}@db/kici"),
        ),
        ("KICI_SECERT_KEY", secret),
    ]);
    assert!(e.problems.len() >= 4, "{e}");
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains(secret), "leaked in {shown}");
    }
    let both = err(&[
        ("KICI_SECRET_KEY", secret),
        ("KICI_SECRET_KEY_FILE", file.path()),
    ]);
    assert!(!both.to_string().contains(secret));

    let loaded = ok(&[
        ("KICI_MODE", "hybrid"),
        ("KICI_PLATFORM_URL", "wss://p/ws"),
        ("KICI_PLATFORM_TOKEN", secret),
        ("KICI_BOOTSTRAP_ADMIN_TOKEN", secret),
        ("KICI_SECRET_KEY_OLD", KEY_HEX),
        (
            "KICI_DATABASE_URL",
            &format!("postgres://kici:{secret}@db/kici"),
        ),
    ]);
    let debug = format!("{:?}", loaded.config);
    assert!(
        !debug.contains(secret) && !debug.contains(KEY_HEX),
        "{debug}"
    );
    assert!(debug.contains("postgres://kici:***@db/kici"), "{debug}");
    let ignored = ok(&[("KICI_PLATFORM_TOKEN", secret)]);
    assert_eq!(
        ignored.warnings,
        ["KICI_PLATFORM_TOKEN is ignored because KICI_MODE is independent"]
    );
    assert!(ignored.config.platform_token.is_none());
}

#[test]
fn database_url_passwords_are_redacted() {
    let cases = [
        ("postgres://user:pw@host/db", "postgres://user:***@host/db"),
        (
            "postgresql://u:p@ss/w?rd@h:5432/d",
            "postgresql://u:***@h:5432/d",
        ),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("postgresql://h:5432/d", "postgresql://h:5432/d"),
        (
            "postgres://h/d?sslmode=require&password=pw",
            "postgres://h/d?sslmode=require&password=***",
        ),
        (
            "host=h password=secret dbname=d",
            "host=h password=*** dbname=d",
        ),
        (
            "host=h password = 'a b\\' c' dbname=d",
            "host=h password = *** dbname=d",
        ),
        ("PASSWORD=x", "PASSWORD=***"),
        ("user:pw@host/db", "user:***@host/db"),
    ];
    for (url, expected) in cases {
        assert_eq!(redact_database_url(url), expected, "for {url:?}");
    }
}

#[test]
fn secret_key_is_read_from_a_file() {
    let good = TempFile::new("good", &format!("  {KEY_HEX}\n"));
    let loaded = ok(&[
        ("KICI_SECRET_KEY", ""),
        ("KICI_SECRET_KEY_FILE", good.path()),
    ]);
    assert!(loaded.warnings.is_empty());
    let old = ok(&[("KICI_SECRET_KEY_FILE_OLD", good.path())]);
    assert!(old.config.secret_key_old.is_some());

    let empty = TempFile::new("empty", " \n");
    let e = err(&[
        ("KICI_SECRET_KEY", ""),
        ("KICI_SECRET_KEY_FILE", empty.path()),
    ]);
    assert_eq!(
        e.problems,
        [format!(
            "KICI_SECRET_KEY_FILE: file '{}' is empty",
            empty.path()
        )]
    );

    let bad = TempFile::new("bad", "abc");
    let e = err(&[
        ("KICI_SECRET_KEY", ""),
        ("KICI_SECRET_KEY_FILE", bad.path()),
    ]);
    assert_eq!(
        e.problems,
        [format!(
            "KICI_SECRET_KEY_FILE: file '{}': {}",
            bad.path(),
            key_error("abc")
        )]
    );

    let missing = std::env::temp_dir().join("kici-config-test-no-such-file");
    let missing = missing.to_str().expect("UTF-8 temp dir");
    let e = err(&[("KICI_SECRET_KEY", ""), ("KICI_SECRET_KEY_FILE", missing)]);
    let prefix = format!("KICI_SECRET_KEY_FILE: cannot read file '{missing}': ");
    assert!(
        e.problems.len() == 1 && e.problems[0].starts_with(&prefix),
        "{e}"
    );
    assert!(e.problems[0].contains("os error"), "{e}");

    let huge = TempFile::new("huge", &"a".repeat(KEY_FILE_LIMIT as usize + 1));
    let e = err(&[
        ("KICI_SECRET_KEY", ""),
        ("KICI_SECRET_KEY_FILE", huge.path()),
    ]);
    assert!(e.problems[0].contains("is larger than 4096 bytes"), "{e}");
}

#[test]
fn auto_migrate_is_off_only_for_the_exact_value_false() {
    for (value, expected, warns) in [
        ("false", false, false),
        ("true", true, false),
        ("1", true, false),
        ("0", true, true),
        ("no", true, true),
        ("FALSE", true, true),
        ("off", true, true),
    ] {
        let loaded = ok(&[("KICI_AUTO_MIGRATE", value)]);
        assert_eq!(loaded.config.auto_migrate, expected, "for {value:?}");
        assert_eq!(loaded.warnings.len(), usize::from(warns), "for {value:?}");
    }
    let loaded = ok(&[("KICI_AUTO_MIGRATE", "0")]);
    let expected = "KICI_AUTO_MIGRATE=\"0\" is treated as true: only the exact value false disables auto-migration";
    assert_eq!(loaded.warnings, [expected]);
}

#[test]
fn storage_settings() {
    let s3 = ok(&[
        ("KICI_STORAGE_TYPE", "s3"),
        ("KICI_STORAGE_BUCKET", "cache"),
        ("KICI_STORAGE_REGION", "us-east-1"),
        ("KICI_STORAGE_PREFIX", "ci/"),
        ("KICI_STORAGE_ENDPOINT", "http://127.0.0.1:9000"),
        ("KICI_STORAGE_FORCE_PATH_STYLE", "true"),
        ("KICI_STORAGE_PATH", "/var/lib/kici"),
    ]);
    let s = s3.config.storage.expect("storage");
    assert_eq!(
        (s.kind, s.bucket.as_deref(), s.region.as_deref()),
        (StorageType::S3, Some("cache"), Some("us-east-1"))
    );
    assert_eq!(
        (s.prefix.as_str(), s.endpoint.as_deref()),
        ("ci/", Some("http://127.0.0.1:9000"))
    );
    assert!(s.force_path_style && s.log_bucket.is_none() && s.fs_path.is_none());

    let fs = ok(&[
        ("KICI_STORAGE_TYPE", "filesystem"),
        ("KICI_STORAGE_FS_PATH", "/var/cache/kici"),
    ]);
    let s = fs.config.storage.expect("storage");
    assert_eq!(
        (s.kind, s.fs_path),
        (
            StorageType::Filesystem,
            Some(PathBuf::from("/var/cache/kici"))
        )
    );

    let unset = ok(&[
        ("KICI_STORAGE_BUCKET", "cache"),
        ("KICI_STORAGE_PREFIX", ""),
    ]);
    assert!(unset.config.storage.is_none());
    assert_eq!(unset.warnings.len(), 1);
    assert!(unset.warnings[0]
        .starts_with("KICI_STORAGE_BUCKET ignored because KICI_STORAGE_TYPE is not set"));
}

#[test]
fn only_kici_names_matter_and_empty_means_unset() {
    let loaded = ok(&[
        ("PATH", "/bin"),
        ("kici_port", "x"),
        ("KICI_PORT", ""),
        ("KICI_LOG_LEVEL", ""),
    ]);
    assert_eq!(
        (loaded.config.port, loaded.config.log_level),
        (4000, LevelFilter::Info)
    );
}

#[cfg(unix)]
#[test]
fn non_utf8_values_are_a_problem_not_a_panic() {
    use std::os::unix::ffi::OsStringExt;
    let os = |bytes: &[u8]| OsString::from_vec(bytes.to_vec());
    let env = [
        (os(b"KICI_MODE"), os(b"independent")),
        (os(b"KICI_SECRET_KEY"), os(KEY_HEX.as_bytes())),
        (os(b"KICI_DATABASE_URL"), os(b"postgres://u:\xffpw@h/d")),
        (os(b"KICI_\xff"), os(b"1")),
        (os(b"HOME\xff"), os(b"\xff")),
    ];
    let e = Loader::from_os(env).load().err().expect("problems");
    let expected = [
        "KICI_DATABASE_URL: value is not valid UTF-8",
        "KICI_\u{FFFD}: unknown variable (no similar known name)",
    ];
    assert_eq!(e.problems, expected);
}
