//! What the caches hold, and removing what expired (`kici-admin storage usage | prune`;
//! docs/caches.md, "Operating the caches"). `tally` and `prunable` are pure; `usage` and
//! `prune` read and delete through the store.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::user;
use crate::storage::{
    freshness, keys::CACHE_PREFIXES, Area, Freshness, Listed, Storage, StorageError,
};

/// Bytes of one kind of cache for one organization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// `source`, `deps` or `cache` (workflow caches).
    pub kind: String,
    /// The organization of a workflow cache; `None` for tarballs (shared by content hash).
    pub org: Option<String>,
    pub objects: u64,
    pub bytes: u64,
}

/// The kind and organization of a stored key, if it is a cache object.
pub fn classify(key: &str) -> Option<(&str, Option<&str>)> {
    let mut parts = key.splitn(3, '/');
    match (parts.next()?, parts.next()) {
        ("source", Some(_)) => Some(("source", None)),
        ("deps", Some(_)) => Some(("deps", None)),
        ("cache", Some(org)) if parts.next().is_some() => Some(("cache", Some(org))),
        _ => None,
    }
}

/// Sums listed objects per kind and organization (only `org`'s workflow caches when given).
pub fn tally(listed: &[Listed], org: Option<&str>) -> Vec<Usage> {
    let mut sums: BTreeMap<(String, Option<String>), Usage> = BTreeMap::new();
    for l in listed {
        let Some((kind, owner)) = classify(&l.key) else {
            continue;
        };
        if org.is_some() && owner != org {
            continue;
        }
        let k = (kind.to_owned(), owner.map(str::to_owned));
        let u = sums.entry(k.clone()).or_insert_with(|| Usage {
            kind: k.0,
            org: k.1,
            ..Usage::default()
        });
        u.objects += 1;
        u.bytes = u.bytes.saturating_add(l.size);
    }
    sums.into_values().collect()
}

/// Every cache object (`source/`, `deps/`, `cache/`), with sizes.
fn list_all(storage: &Storage) -> Result<Vec<Listed>, StorageError> {
    let mut out = Vec::new();
    for prefix in CACHE_PREFIXES {
        out.extend(storage.list(Area::Cache, prefix)?);
    }
    Ok(out)
}

pub fn usage(storage: &Storage, org: Option<&str>) -> Result<Vec<Usage>, StorageError> {
    Ok(tally(&list_all(storage)?, org))
}

/// An entry's companions, removed with it.
pub fn companions(key: &str) -> Vec<String> {
    if let Some(stem) = key
        .strip_prefix("deps/")
        .and_then(|k| k.strip_suffix(".tar.gz"))
    {
        return vec![format!("deps/{stem}.hash")];
    }
    if key.starts_with("cache/") {
        return vec![user::hash_key(key), user::size_key(key)];
    }
    Vec::new()
}

/// An in-flight workflow-cache upload older than this was abandoned.
pub const ABANDONED_UPLOAD_SECS: i64 = 86_400;

/// Whether a listed entry should go: a committed tarball idle past the TTL, or an abandoned
/// workflow-cache upload. `fresh` is what the entry's metadata says.
pub fn prunable(l: &Listed, now: Timestamp, fresh: Freshness) -> bool {
    if !l.key.ends_with(".tar.gz") {
        return false;
    }
    let temp = l
        .key
        .rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with(".tmp-"));
    if temp {
        let modified: Option<Timestamp> = l.last_modified.parse().ok();
        return modified.is_some_and(|m| now.as_second() - m.as_second() > ABANDONED_UPLOAD_SECS);
    }
    fresh == Freshness::Expired
}

/// What was (or, dry, would be) removed: entry keys and their bytes.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    pub removed: Vec<String>,
    pub bytes: u64,
}

/// Removes expired entries (with their companions) and abandoned uploads now.
pub fn prune(storage: &Storage, now: Timestamp, dry_run: bool) -> Result<Pruned, StorageError> {
    let mut out = Pruned::default();
    for l in list_all(storage)? {
        if !l.key.ends_with(".tar.gz") {
            continue;
        }
        // Without touching: reading the metadata here is not a use.
        let meta = storage.head(Area::Cache, &l.key)?.and_then(|i| i.meta);
        if !prunable(
            &l,
            now,
            freshness(meta.as_ref(), now, storage.ttl_for(&l.key)),
        ) {
            continue;
        }
        if !dry_run {
            storage.delete(Area::Cache, &l.key)?;
            for c in companions(&l.key) {
                storage.delete(Area::Cache, &c)?;
            }
        }
        out.bytes = out.bytes.saturating_add(l.size);
        out.removed.push(l.key);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Meta;

    fn listed(key: &str, size: u64, modified: &str) -> Listed {
        Listed {
            key: key.into(),
            size,
            last_modified: modified.into(),
        }
    }

    #[test]
    fn usage_is_per_kind_and_organization() {
        let all = [
            listed("source/a.tar.gz", 10, ""),
            listed("source/b.tar.gz", 5, ""),
            listed("deps/linux-x64/l.tar.gz", 7, ""),
            listed("deps/linux-x64/l.hash", 1, ""),
            listed("cache/acme/app/shared/k.tar.gz", 3, ""),
            listed("cache/other/app/shared/k.tar.gz", 4, ""),
            listed("kici-logs/x", 100, ""),
        ];
        let u = tally(&all, None);
        let line = |u: &Usage| format!("{} {:?} {} {}", u.kind, u.org, u.objects, u.bytes);
        let lines: Vec<String> = u.iter().map(line).collect();
        assert_eq!(
            lines,
            [
                "cache Some(\"acme\") 1 3",
                "cache Some(\"other\") 1 4",
                "deps None 2 8",
                "source None 2 15"
            ]
        );
        let acme: Vec<String> = tally(&all, Some("acme")).iter().map(line).collect();
        assert_eq!(acme, ["cache Some(\"acme\") 1 3"]);
        assert_eq!(classify("cache/acme"), None);
    }

    #[test]
    fn expired_entries_and_abandoned_uploads_are_pruned() {
        let now: Timestamp = "2026-12-05T00:00:00Z".parse().unwrap();
        let expired = Freshness::Expired;
        let fresh = Freshness::Fresh(Meta::new(now));
        assert!(prunable(&listed("source/a.tar.gz", 1, ""), now, expired));
        assert!(!prunable(&listed("source/a.tar.gz", 1, ""), now, fresh));
        assert!(!prunable(&listed("deps/p/l.hash", 1, ""), now, expired));
        assert!(!prunable(
            &listed("source/a.tar.gz", 1, ""),
            now,
            Freshness::Uncommitted
        ));
        let tmp = "cache/o/r/shared/.tmp-j-k.tar.gz";
        assert!(prunable(
            &listed(tmp, 1, "2026-12-03T00:00:00Z"),
            now,
            Freshness::Uncommitted
        ));
        assert!(!prunable(
            &listed(tmp, 1, "2026-12-04T12:00:00Z"),
            now,
            Freshness::Uncommitted
        ));
        assert_eq!(
            companions("deps/linux-x64/l.tar.gz"),
            ["deps/linux-x64/l.hash"]
        );
        assert_eq!(
            companions("cache/o/r/shared/k.tar.gz"),
            [
                "cache/o/r/shared/k.tar.gz.hash",
                "cache/o/r/shared/k.tar.gz.size"
            ]
        );
        assert!(companions("source/a.tar.gz").is_empty());
    }
}
