//! The S3 backend against a real SigV4-verifying server (s3s-fs on 127.0.0.1): `storage check`
//! OK lines and every failure message, presigned URLs used by curl (50 MiB through the agents'
//! endpoint), tampered and expired URLs refused, odd keys, the split log bucket, TTL with an
//! injected clock, and `storage lifecycle` on a store without the lifecycle API.

use crate::support;

use jiff::{SignedDuration, Timestamp};
use kici_orchestrator::storage::{
    keys,
    presign::Verb,
    s3::{agent, send},
    Area, Audience, Meta,
};
use support::{
    daemon::{cli, stderr, stdout},
    s3::S3Server,
    storage::{big_file, curl, open, ttl_scenario},
};

fn with(mut env: Vec<(String, String)>, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in changes {
        env.retain(|(name, _)| name != k);
        if !v.is_empty() {
            env.push((k.to_string(), v.to_string()));
        }
    }
    env
}

#[test]
fn storage_check_passes_on_every_endpoint_and_names_each_problem() {
    let s3 = S3Server::start();
    s3.create_bucket("cache");
    s3.create_bucket("logs");
    let env = with(s3.env("cache"), &[("KICI_STORAGE_LOG_BUCKET", "logs")]);
    let out = cli(&["storage", "check"], &env);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for check in ["internal", "agent", "upload", "logs"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(check))
            .unwrap_or_else(|| panic!("no {check} line in:\n{text}"));
        assert!(line.starts_with("OK "), "{line}");
        assert!(line.contains("clock skew"), "{line}");
    }
    assert!(
        text.contains("http://localhost:"),
        "the agent line probes the external endpoint"
    );

    let failing = |changes: &[(&str, &str)], wanted: &str| {
        let out = cli(&["storage", "check"], &with(s3.env("cache"), changes));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{changes:?}:\n{all}");
        assert!(
            all.contains(wanted),
            "{changes:?}: wanted {wanted:?} in:\n{all}"
        );
        assert!(
            !all.contains(support::s3::SECRET_KEY),
            "the secret leaked:\n{all}"
        );
    };
    failing(
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        "signature rejected (SignatureDoesNotMatch): check AWS_SECRET_ACCESS_KEY",
    );
    failing(
        &[("KICI_STORAGE_REGION", "")],
        "KICI_STORAGE_REGION: is required when KICI_STORAGE_TYPE is s3 (any value such as us-east-1",
    );
    failing(
        &[("KICI_STORAGE_FORCE_PATH_STYLE", "false")],
        "path style needed",
    );
    failing(
        &[("KICI_STORAGE_BUCKET", "no-such-bucket")],
        "bucket \"no-such-bucket\" missing at",
    );
    failing(
        &[("KICI_STORAGE_ENDPOINT", "http://127.0.0.1:9")],
        "endpoint unreachable",
    );
    failing(
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ],
        "S3 storage needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    );
}

#[test]
fn an_agent_url_moves_50_mib_byte_for_byte_with_curl() {
    let s3 = S3Server::start();
    s3.create_bucket("cache");
    let env = s3.env("cache");
    let key = "source/big bundle+ü.tar.gz";
    let presign = |method: &str| {
        let out = cli(
            &[
                "storage", "presign", key, "--method", method, "--for", "agent",
            ],
            &env,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let put = presign("put");
    assert!(
        put.starts_with(&format!("http://localhost:{}/cache/source/", s3.port)),
        "{put}"
    );
    assert!(
        put.contains("X-Amz-Expires=1800"),
        "PUT URLs live 30 minutes: {put}"
    );
    let dir = s3.data.with_extension("files");
    let (file, bytes) = big_file(&dir, "upload.bin", 50 * 1024 * 1024);
    let (status, body) = curl(&["-T", file.to_str().unwrap(), &put]);
    assert_eq!(status, 200, "{body}");
    let get = presign("get");
    assert!(
        get.contains("X-Amz-Expires=900"),
        "GET URLs live 15 minutes: {get}"
    );
    let out_file = dir.join("download.bin");
    let (status, _) = curl(&["-o", out_file.to_str().unwrap(), &get]);
    assert_eq!(status, 200);
    let back = std::fs::read(&out_file).unwrap();
    assert!(
        back.len() == bytes.len() && back == bytes,
        "download differs from upload"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tampered_and_expired_urls_are_refused_and_change_nothing() {
    let s3 = S3Server::start();
    s3.create_bucket("cache");
    let storage = open(&s3.env("cache"));
    let http = agent();
    let key = "deps/linux-x64/lock.tar.gz";
    let now = Timestamp::now();
    storage
        .put(Area::Cache, key, b"original", Some(&Meta::new(now)))
        .unwrap();

    let put = |url: &str| {
        send(&http, Verb::Put, url, &[], b"overwritten")
            .unwrap()
            .status
    };
    let url = storage
        .upload_url(Area::Cache, key, Audience::Agent, now)
        .unwrap();
    // One signature character changed.
    let (head, sig) = url.rsplit_once("X-Amz-Signature=").unwrap();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    let tampered = format!("{head}X-Amz-Signature={flipped}{}", &sig[1..]);
    assert_eq!(put(&tampered), 403);
    // The key changed under a valid signature.
    let moved = url.replace("lock.tar.gz", "other.tar.gz");
    assert_eq!(put(&moved), 403);
    // Signed two hours ago for 30 minutes (injected clock).
    let old = now - SignedDuration::from_hours(2);
    let expired = storage
        .upload_url(Area::Cache, key, Audience::Agent, old)
        .unwrap();
    assert_eq!(put(&expired), 403);
    assert_eq!(
        storage.get(Area::Cache, key).unwrap().as_deref(),
        Some(&b"original"[..])
    );
    // The genuine URL works.
    assert_eq!(put(&url), 200);
    assert_eq!(
        storage.get(Area::Cache, key).unwrap().as_deref(),
        Some(&b"overwritten"[..])
    );
}

#[test]
fn odd_keys_and_the_split_log_bucket() {
    let s3 = S3Server::start();
    s3.create_bucket("cache");
    s3.create_bucket("logs");
    let env = with(
        s3.env("cache"),
        &[
            ("KICI_STORAGE_LOG_BUCKET", "logs"),
            ("KICI_STORAGE_PREFIX", "team a/"),
        ],
    );
    let storage = open(&env);
    let now = Timestamp::now();
    let odd = [
        "cache/acme/web/shared/key with spaces.tar.gz",
        "cache/acme/web/shared/ünïcödé €.tar.gz",
        "cache/acme/web/shared/a+b=c&d~e(1).tar.gz",
    ];
    for key in odd {
        storage
            .put(Area::Cache, key, key.as_bytes(), Some(&Meta::new(now)))
            .unwrap();
        let url = storage
            .cached_url(key, Audience::Agent, now)
            .unwrap()
            .expect("hit");
        let got = send(&agent(), Verb::Get, &url, &[], &[]).unwrap();
        assert_eq!(
            (got.status, got.body.as_slice()),
            (200, key.as_bytes()),
            "{key}"
        );
    }
    let listed: Vec<String> = storage
        .list(Area::Cache, "cache/acme/web/")
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    for key in odd {
        assert!(listed.contains(&key.to_owned()), "{key} not in {listed:?}");
    }
    // Logs land in the log bucket, under the prefix, and nowhere else.
    let log = keys::step_log("exec-1", "build", 2);
    storage.put(Area::Logs, &log, b"step output", None).unwrap();
    assert!(s3.data.join("logs/team a").join(&log).is_file());
    assert!(!s3.data.join("cache/team a").join(&log).exists());
    assert_eq!(storage.get(Area::Cache, &log).unwrap(), None);
    for key in odd {
        storage.delete(Area::Cache, key).unwrap();
        assert_eq!(storage.head(Area::Cache, key).unwrap(), None);
    }
}

#[test]
fn ttl_expires_idle_entries_and_reads_touch_them() {
    let s3 = S3Server::start();
    s3.create_bucket("cache");
    let storage = open(&s3.env("cache"));
    let http = agent();
    ttl_scenario(&storage, &keys::source("content-hash-1"), |url, bytes| {
        assert_eq!(send(&http, Verb::Put, url, &[], bytes).unwrap().status, 200);
    });
}

#[test]
fn lifecycle_on_a_store_without_the_api_prints_the_rules_and_refuses_short_expiry() {
    let s3 = S3Server::start();
    s3.create_bucket("cache");
    let env = s3.env("cache");
    let out = cli(&["storage", "lifecycle", "--apply"], &env);
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(text.contains("no lifecycle API"), "{text}");
    assert!(text.contains("<ID>kici-test-uploads</ID>"), "{text}");
    assert!(text.contains("<Days>30</Days>"), "{text}");
    assert!(
        text.contains("<DaysAfterInitiation>1</DaysAfterInitiation>"),
        "{text}"
    );
    assert!(
        err.contains("apply the rules printed above by hand"),
        "{err}"
    );

    let out = cli(&["storage", "lifecycle", "--apply", "--days", "10"], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("--days 10 refused: must be at least 30"),
        "{err}"
    );
    assert!(err.contains("relies on cache freshness"), "{err}");
    assert!(err.contains("cache misses"), "{err}");
}
