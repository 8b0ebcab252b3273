//! The object key layout (docs/operations.md, "Object storage"), and the rules every key must
//! follow. Pure.
//!
//! Keys here are *logical*: `KICI_STORAGE_PREFIX` is prepended by the backend, so the same key
//! names the same object whatever the prefix. Cache-bucket keys: `source/…`, `deps/…`,
//! `cache/…`, `provenance/…`, `test-uploads/…`; log-bucket keys: `kici-logs/…`, `event-log/…`.

/// S3's own limit on a key, in bytes (prefix included).
pub const MAX_KEY_BYTES: usize = 1024;

/// Where the filesystem backend keeps its in-flight writes; not a valid key segment.
pub const FS_TMP_DIR: &str = ".kici-tmp";
/// The filesystem backend's metadata sidecar suffix; keys may not end with it.
pub const FS_META_SUFFIX: &str = ".meta.json";

/// The workflow bundle (`.kici/` minus `node_modules`), by its content hash.
pub fn source(content_hash: &str) -> String {
    format!("source/{}.tar.gz", segment(content_hash))
}

/// Packed `node_modules` for one platform and lockfile.
pub fn deps(platform: &str, arch: &str, lockfile_hash: &str) -> String {
    format!(
        "deps/{}-{}/{}.tar.gz",
        segment(platform),
        segment(arch),
        segment(lockfile_hash)
    )
}

/// SHA-256 hex of the deps tarball (the code's `.hash`, not the doc's `.tar.gz.hash`).
pub fn deps_hash(platform: &str, arch: &str, lockfile_hash: &str) -> String {
    format!(
        "deps/{}-{}/{}.hash",
        segment(platform),
        segment(arch),
        segment(lockfile_hash)
    )
}

/// Where a user cache lives: shared between trusted refs, or isolated to one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope<'a> {
    Shared,
    Isolated { run_id: &'a str },
}

/// A user cache tarball: `cache/<org>/<repo>/shared/<key>.tar.gz` or `…/iso/<runId>/<key>.tar.gz`.
pub fn user_cache(org: &str, repo: &str, scope: CacheScope<'_>, cache_key: &str) -> String {
    let scope = match scope {
        CacheScope::Shared => "shared".to_owned(),
        CacheScope::Isolated { run_id } => format!("iso/{}", segment(run_id)),
    };
    format!(
        "cache/{}/{}/{scope}/{}.tar.gz",
        segment(org),
        segment(repo),
        segment(cache_key)
    )
}

/// A DSSE provenance bundle.
pub fn provenance(run_id: &str, job_id: &str, subject_digest: &str) -> String {
    format!(
        "provenance/{}/{}/{}.kici.json",
        segment(run_id),
        segment(job_id),
        segment(subject_digest)
    )
}

/// An encrypted `kici run remote` overlay. The routing key is reduced to `[a-zA-Z0-9_-]` as the
/// reference does; a missing commit is `unknown`.
pub fn test_upload(routing_key: &str, sha: Option<&str>, upload_id: &str) -> String {
    let safe: String = routing_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let sha = sha.filter(|s| !s.is_empty()).unwrap_or("unknown");
    format!(
        "test-uploads/{safe}/{}/{}.tar.gz.enc",
        segment(sha),
        segment(upload_id)
    )
}

/// Prefix of the test uploads, which a bucket rule expires after a day.
pub const TEST_UPLOADS_PREFIX: &str = "test-uploads/";
/// Prefixes of the cache entries that `KICI_CACHE_TTL_DAYS` governs.
pub const CACHE_PREFIXES: [&str; 3] = ["source/", "deps/", "cache/"];
/// Prefixes of what the log bucket holds.
pub const LOG_PREFIXES: [&str; 2] = ["kici-logs/", "event-log/"];

/// One step's log, JSON lines (log bucket):
/// `kici-logs/executions/<runId>/job-<jobName>/step-<i>.log` (`step--1.log` for the workflow's own
/// setup lines).
pub fn step_log(run_id: &str, job_name: &str, step_index: i64) -> String {
    format!(
        "kici-logs/executions/{}/job-{}/step-{step_index}.log",
        segment(run_id),
        segment(job_name)
    )
}

/// A webhook payload kept out of the database (log bucket).
pub fn event_payload(org_id: &str, delivery_id: &str) -> String {
    format!(
        "event-log/{}/{}.json.gz",
        segment(org_id),
        segment(delivery_id)
    )
}

/// Makes a caller-supplied value safe as one path segment: no `/`, no NUL, never `.`/`..`/empty.
fn segment(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => format!("_{cleaned}"),
        _ => cleaned,
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadKey(pub &'static str);

/// A key the stores accept: non-empty, at most 1024 bytes, no NUL or other control characters,
/// no empty, `.` or `..` segment (so a filesystem path built from it stays under the root), not
/// the filesystem backend's temp folder, not ending in its metadata suffix.
pub fn validate(key: &str) -> Result<(), BadKey> {
    if key.is_empty() {
        return Err(BadKey("the key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(BadKey("the key is longer than 1024 bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(BadKey("the key contains a NUL or control character"));
    }
    if key.contains('\\') {
        return Err(BadKey("the key contains a backslash"));
    }
    for part in key.split('/') {
        match part {
            "" => {
                return Err(BadKey(
                    "the key has an empty segment (leading, trailing or double /)",
                ))
            }
            "." | ".." => return Err(BadKey("the key has a . or .. segment")),
            FS_TMP_DIR => return Err(BadKey("the key uses the reserved segment .kici-tmp")),
            _ => {}
        }
    }
    if key.ends_with(FS_META_SUFFIX) {
        return Err(BadKey("the key ends with the reserved suffix .meta.json"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec() {
        assert_eq!(source("abc"), "source/abc.tar.gz");
        assert_eq!(deps("linux", "x64", "h1"), "deps/linux-x64/h1.tar.gz");
        assert_eq!(deps_hash("linux", "x64", "h1"), "deps/linux-x64/h1.hash");
        assert_eq!(
            user_cache("o", "r", CacheScope::Shared, "k"),
            "cache/o/r/shared/k.tar.gz"
        );
        assert_eq!(
            user_cache("o", "r", CacheScope::Isolated { run_id: "run1" }, "k"),
            "cache/o/r/iso/run1/k.tar.gz"
        );
        assert_eq!(provenance("r", "j", "d"), "provenance/r/j/d.kici.json");
        assert_eq!(
            test_upload("gh:acme/app.1", Some("deadbeef"), "u1"),
            "test-uploads/gh_acme_app_1/deadbeef/u1.tar.gz.enc"
        );
        assert_eq!(
            test_upload("k", None, "u1"),
            "test-uploads/k/unknown/u1.tar.gz.enc"
        );
        assert_eq!(
            step_log("e", "build (a, b)", 3),
            "kici-logs/executions/e/job-build (a, b)/step-3.log"
        );
        assert_eq!(
            step_log("e", "j", -1),
            "kici-logs/executions/e/job-j/step--1.log"
        );
        assert_eq!(event_payload("acme", "d-1"), "event-log/acme/d-1.json.gz");
    }

    #[test]
    fn hostile_parts_stay_one_segment() {
        assert_eq!(source("../../etc/passwd"), "source/.._.._etc_passwd.tar.gz");
        assert_eq!(
            user_cache("..", ".", CacheScope::Shared, ""),
            "cache/_../_./shared/_.tar.gz"
        );
        for key in [
            source("../x"),
            deps("..", "..", ".."),
            user_cache("a/b", "..", CacheScope::Isolated { run_id: ".." }, "x\0y"),
        ] {
            assert_eq!(validate(&key), Ok(()), "{key}");
        }
    }

    #[test]
    fn validation() {
        for ok in [
            "a",
            "source/x.tar.gz",
            "odd dir/a b+c~d=e&f/ü€ (1).txt",
            "cache/o/r/shared/.tmp-1.tar.gz",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(1025);
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "./a",
            "a/../b",
            "..",
            "a\0b",
            "a\nb",
            "a\\b",
            ".kici-tmp/x",
            "x.meta.json",
            long.as_str(),
        ] {
            assert!(validate(bad).is_err(), "{bad:?} accepted");
        }
    }
}
