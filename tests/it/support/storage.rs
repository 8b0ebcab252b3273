//! Storage helpers shared by the S3 and filesystem tests: opening a `Storage` from variables as
//! the daemon does, big files, curl, and the TTL scenario both backends must pass.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use kici_orchestrator::{
    config::{default_blob_base_url, StorageOnly},
    crypto::SecretKey,
    storage::{Area, Audience, OpenParams, Storage},
};

/// Opens storage from `vars` (KICI_STORAGE_*, AWS_*, KICI_SECRET_KEY, KICI_PORT).
pub fn open(vars: &[(String, String)]) -> Storage {
    let map: HashMap<String, String> = vars.iter().cloned().collect();
    let settings = StorageOnly::from_vars(map.clone()).expect("valid storage settings");
    let key = map
        .get("KICI_SECRET_KEY")
        .map(|k| SecretKey::parse(k).expect("valid key"));
    let env = |name: &str| map.get(name).cloned();
    let params = OpenParams {
        ttl_days: settings.cache_ttl_days,
        secret_key: key.as_ref(),
        secret_key_old: None,
        default_base_url: default_blob_base_url(settings.port, &settings.base_path),
        env: &env,
    };
    Storage::open(
        settings.storage.as_ref().expect("storage configured"),
        &params,
    )
    .expect("storage opens")
}

/// A file of `len` pseudo-random (xorshift) bytes, and its content.
pub fn big_file(dir: &Path, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// Runs curl; returns (HTTP status, body). `-T file` uploads with PUT.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-g", "-w", "\n%{http_code}", "--max-time", "120"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

pub fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// TTL (docs/operations.md, "Object storage") with an injected clock: an uploaded but uncommitted
/// entry is a miss and stays; a committed one is a hit that touches it; one idle for longer than
/// the TTL is a miss and is deleted. `upload(url, bytes)` performs the agent's presigned PUT.
pub fn ttl_scenario(storage: &Storage, key: &str, upload: impl Fn(&str, &[u8])) {
    let t0: Timestamp = Timestamp::now();
    let url = storage
        .upload_url(Area::Cache, key, Audience::Agent, t0)
        .expect("upload URL");
    upload(&url, b"bundle bytes");
    let found = |at: Timestamp| {
        storage
            .cached_url(key, Audience::Agent, at)
            .expect("cached_url")
    };
    assert_eq!(found(t0), None, "uncommitted entry must read as a miss");
    assert!(
        storage.head(Area::Cache, key).unwrap().is_some(),
        "and must not be deleted"
    );
    assert!(
        storage.commit(Area::Cache, key, t0).unwrap(),
        "commit finds the object"
    );
    let day29 = t0 + days(29);
    assert!(found(day29).is_some(), "fresh after 29 days");
    let meta = storage
        .head(Area::Cache, key)
        .unwrap()
        .unwrap()
        .meta
        .unwrap();
    assert_eq!(
        meta.last_accessed_at.as_second(),
        day29.as_second(),
        "a hit touches the entry"
    );
    assert_eq!(
        meta.created_at.as_second(),
        t0.as_second(),
        "touching keeps createdAt"
    );
    // 59 days after creation but only 30 after the last access: still fresh.
    let day59 = day29 + days(30);
    assert!(
        found(day59).is_some(),
        "the TTL counts from the last access"
    );
    let late = day59 + days(30) + SignedDuration::from_secs(1);
    assert_eq!(found(late), None, "idle for longer than the TTL");
    assert_eq!(
        storage.head(Area::Cache, key).unwrap(),
        None,
        "expired entry is deleted"
    );
    assert_eq!(storage.ttl(), Duration::from_secs(30 * 86_400));
}
