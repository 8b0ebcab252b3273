//! Workflow caches in storage (docs/caches.md, "Workflow caches"): restore (exact key, then
//! each restore key as a prefix, newest first), save (a presigned PUT to a temp key), and the
//! commit on completion (temp → final, `.hash` and `.size` companions, the organization's quota
//! enforced by evicting the least recently used entries). Every answer is the documented one when
//! something fails: a miss, or `skip`.

use serde_json::{json, Value};

use super::user::{self, Entry, Namespace};
use crate::storage::{Area, Audience, Meta, Storage, StorageError};

/// `cache.user.restore.response` fields for `key` and `restore_keys`.
pub fn restore(
    storage: &Storage,
    ns: &Namespace,
    key: &str,
    restore_keys: &[String],
    now: jiff::Timestamp,
) -> Result<Value, StorageError> {
    let miss = json!({ "hit": false });
    if user::check_key(key).is_err() {
        return Ok(miss);
    }
    let prefixes = ns.read_prefixes();
    // The exact key first, in every readable prefix.
    for prefix in &prefixes {
        let entry = user::entry_key(prefix, key);
        if let Some(found) = hit(storage, &entry, key, now)? {
            return Ok(found);
        }
    }
    for rk in restore_keys.iter().take(user::MAX_RESTORE_KEYS) {
        if user::check_key(rk).is_err() {
            continue;
        }
        for prefix in &prefixes {
            let wanted = format!("{prefix}{}", user::segment(rk));
            // Newest first (the store lists that way).
            for listed in storage.list(Area::Cache, &wanted)? {
                let Some(name) = user::listed_entry(prefix, &listed.key) else {
                    continue;
                };
                if let Some(found) = hit(storage, &listed.key, name, now)? {
                    return Ok(found);
                }
            }
        }
    }
    Ok(miss)
}

/// A hit on `entry` (touched, with a 15-minute URL and its hash), or `None`.
fn hit(
    storage: &Storage,
    entry: &str,
    matched: &str,
    now: jiff::Timestamp,
) -> Result<Option<Value>, StorageError> {
    let Some(url) = storage.cached_url(entry, Audience::Agent, now)? else {
        return Ok(None);
    };
    let mut found = json!({ "hit": true, "matchedKey": matched, "downloadUrl": url });
    if let Some(hash) = storage.get(Area::Cache, &user::hash_key(entry))? {
        found["tarHash"] = json!(String::from_utf8_lossy(&hash).trim());
    }
    Ok(Some(found))
}

/// `cache.user.save.response` fields: `skip` when the entry exists, else an upload URL for the
/// job's temp key.
pub fn save_request(
    storage: &Storage,
    ns: &Namespace,
    job_id: &str,
    key: &str,
    now: jiff::Timestamp,
) -> Result<Value, StorageError> {
    if user::check_key(key).is_err() {
        return Ok(json!({ "skip": true }));
    }
    let prefix = ns.write_prefix();
    if storage
        .cached_head(&user::entry_key(&prefix, key), now)?
        .is_some()
    {
        return Ok(json!({ "skip": true }));
    }
    let temp = user::temp_key(&prefix, job_id, key);
    let url = storage.upload_url(Area::Cache, &temp, Audience::Agent, now)?;
    Ok(json!({ "skip": false, "uploadUrl": url }))
}

/// `cache.user.save.complete`: the job's upload becomes the entry, with its companions; then the
/// organization's quota. `false` when there was no upload to commit.
pub fn save_complete(
    storage: &Storage,
    ns: &Namespace,
    job_id: &str,
    key: &str,
    tar_hash: &str,
    now: jiff::Timestamp,
) -> Result<bool, StorageError> {
    if user::check_key(key).is_err() {
        return Ok(false);
    }
    let prefix = ns.write_prefix();
    let entry = user::entry_key(&prefix, key);
    let meta = Meta::new(now);
    if !storage.promote(
        Area::Cache,
        &user::temp_key(&prefix, job_id, key),
        &entry,
        &meta,
    )? {
        return Ok(false);
    }
    // The size the store holds, not the one the agent claims.
    let size = storage.head(Area::Cache, &entry)?.map_or(0, |i| i.size);
    let hash: String = tar_hash
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(128)
        .collect();
    if !hash.is_empty() {
        storage.put(
            Area::Cache,
            &user::hash_key(&entry),
            hash.as_bytes(),
            Some(&meta),
        )?;
    }
    storage.put(
        Area::Cache,
        &user::size_key(&entry),
        size.to_string().as_bytes(),
        Some(&meta),
    )?;
    let evicted = enforce_quota(storage, &ns.org_prefix(), storage.user_cache_quota())?;
    if !evicted.is_empty() {
        log::info!(
            "workflow caches of {}: quota {} bytes, evicted {}",
            ns.org_prefix(),
            storage.user_cache_quota(),
            evicted.join(", ")
        );
    }
    Ok(true)
}

/// Evicts the least recently used entries under `org_prefix` beyond `quota` bytes (with their
/// companions); returns the evicted keys.
pub fn enforce_quota(
    storage: &Storage,
    org_prefix: &str,
    quota: u64,
) -> Result<Vec<String>, StorageError> {
    let listed: Vec<_> = storage
        .list(Area::Cache, org_prefix)?
        .into_iter()
        .filter(|l| user::is_entry(&l.key))
        .collect();
    if listed.iter().map(|l| l.size).sum::<u64>() <= quota {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for l in listed {
        let meta = storage.head(Area::Cache, &l.key)?.and_then(|i| i.meta);
        entries.push(Entry {
            last_access_ms: meta.map_or(0, |m| m.last_accessed_at.as_millisecond()),
            key: l.key,
            size: l.size,
        });
    }
    let evicted = user::evictions(entries, quota);
    for key in &evicted {
        delete_entry(storage, key)?;
    }
    Ok(evicted)
}

/// An entry and its companions.
pub fn delete_entry(storage: &Storage, entry: &str) -> Result<(), StorageError> {
    storage.delete(Area::Cache, entry)?;
    storage.delete(Area::Cache, &user::hash_key(entry))?;
    storage.delete(Area::Cache, &user::size_key(entry))
}
