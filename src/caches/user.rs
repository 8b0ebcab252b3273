//! Workflow caches (`ctx.cache` restore and save; docs/caches.md, "Workflow caches"): where a
//! job's caches live and which it may read, and which entries an organization's quota evicts.
//! Pure; the storage side is `super::user_store`.
//!
//! The namespace comes from the job's stored dispatch, never from the agent: the repository of
//! the event (`cache/<org>/<repo>/`), and whether the event is trusted. A trusted run (anything
//! but a pull request from a fork) reads and writes `shared/`; an untrusted one writes only its
//! own `iso/<runId>/` and reads that, then `shared/`. So a fork can never write what a trusted
//! run reads.

use serde_json::Value;

/// `KICI_USER_CACHE_QUOTA_BYTES`' default: 5 GiB per organization.
pub const DEFAULT_QUOTA_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// `KICI_USER_CACHE_TTL_MS`' default: 7 days.
pub const DEFAULT_TTL_MS: u64 = 7 * 86_400_000;
/// Longest cache key or restore key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// At most this many restore keys are tried.
pub const MAX_RESTORE_KEYS: usize = 20;

/// Where a job's workflow caches live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub org: String,
    pub repo: String,
    /// `Some(run id)` for an untrusted event: writes go to `iso/<runId>/`.
    pub isolated_run: Option<String>,
}

impl Namespace {
    /// From a job's stored dispatch: `jobConfig.event.sourceRepo` (`owner/name`) and
    /// `jobConfig.event.isForkPR`. `None` without a repository (no workflow caches then).
    pub fn of(run_id: &str, dispatch: &Value) -> Option<Namespace> {
        let event = dispatch.pointer("/jobConfig/event")?;
        let repo = event.get("sourceRepo").and_then(Value::as_str)?;
        let (org, name) = repo
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty())?;
        let fork = event
            .get("isForkPR")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        Some(Namespace {
            org: org.to_owned(),
            repo: name.to_owned(),
            isolated_run: fork.then(|| run_id.to_owned()),
        })
    }

    /// `shared` or `isolated`, as the dispatch frame's `cacheRefScope` says it.
    pub fn ref_scope(&self) -> &'static str {
        if self.isolated_run.is_some() {
            "isolated"
        } else {
            "shared"
        }
    }

    /// `cache/<org>/`: what the quota counts.
    pub fn org_prefix(&self) -> String {
        format!("cache/{}/", segment(&self.org))
    }

    fn shared_prefix(&self) -> String {
        format!("{}{}/shared/", self.org_prefix(), segment(&self.repo))
    }

    /// Where saves go.
    pub fn write_prefix(&self) -> String {
        match &self.isolated_run {
            None => self.shared_prefix(),
            Some(run) => format!(
                "{}{}/iso/{}/",
                self.org_prefix(),
                segment(&self.repo),
                segment(run)
            ),
        }
    }

    /// Where restores look, in order.
    pub fn read_prefixes(&self) -> Vec<String> {
        match &self.isolated_run {
            None => vec![self.shared_prefix()],
            Some(_) => vec![self.write_prefix(), self.shared_prefix()],
        }
    }
}

/// A value as one key segment: every character outside `A-Z a-z 0-9 . _ -` becomes `_`, and an
/// all-dots segment gets a `_` in front (so it is never `.` or `..`).
pub fn segment(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

/// A cache key refused: empty or too long.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the cache key is empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the cache key is {} bytes, more than {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    Ok(())
}

/// The committed entry of `key` under `prefix`.
pub fn entry_key(prefix: &str, key: &str) -> String {
    format!("{prefix}{}.tar.gz", segment(key))
}

/// The in-flight upload of `key` by job `job_id` (promoted to [`entry_key`] on completion).
pub fn temp_key(prefix: &str, job_id: &str, key: &str) -> String {
    format!("{prefix}.tmp-{}-{}.tar.gz", segment(job_id), segment(key))
}

pub fn hash_key(entry: &str) -> String {
    format!("{entry}.hash")
}

pub fn size_key(entry: &str) -> String {
    format!("{entry}.size")
}

/// The cache key of a listed object directly under `prefix`, when it is a committed entry
/// (not a temp upload, a companion, or something deeper).
pub fn listed_entry<'a>(prefix: &str, listed: &'a str) -> Option<&'a str> {
    let rest = listed.strip_prefix(prefix)?;
    let name = rest.strip_suffix(".tar.gz")?;
    (!name.contains('/') && !name.starts_with(".tmp-") && !name.is_empty()).then_some(name)
}

/// Whether a listed object under `cache/<org>/` is a committed entry (counted by the quota).
pub fn is_entry(key: &str) -> bool {
    key.ends_with(".tar.gz")
        && !key
            .rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with(".tmp-"))
}

/// One committed entry as the quota sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    /// Last access, milliseconds (0 when unknown: evicted first).
    pub last_access_ms: i64,
}

/// The entries to evict, least recently used first, until the rest fit in `quota` bytes.
pub fn evictions(mut entries: Vec<Entry>, quota: u64) -> Vec<String> {
    // u128: a sum of u64 sizes cannot overflow it.
    let mut total: u128 = entries.iter().map(|e| u128::from(e.size)).sum();
    entries.sort_by(|a, b| {
        a.last_access_ms
            .cmp(&b.last_access_ms)
            .then_with(|| a.key.cmp(&b.key))
    });
    let mut out = Vec::new();
    for e in entries {
        if total <= u128::from(quota) {
            break;
        }
        total -= u128::from(e.size);
        out.push(e.key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn dispatch(fork: bool) -> Value {
        json!({"jobConfig": {"event": {"sourceRepo": "acme/app", "isForkPR": fork}}})
    }

    #[test]
    fn trusted_runs_share_and_forks_are_isolated() {
        let trusted = Namespace::of("run-1", &dispatch(false)).unwrap();
        assert_eq!(trusted.write_prefix(), "cache/acme/app/shared/");
        assert_eq!(trusted.read_prefixes(), ["cache/acme/app/shared/"]);
        assert_eq!(trusted.ref_scope(), "shared");
        let fork = Namespace::of("run-2", &dispatch(true)).unwrap();
        assert_eq!(fork.write_prefix(), "cache/acme/app/iso/run-2/");
        assert_eq!(
            fork.read_prefixes(),
            ["cache/acme/app/iso/run-2/", "cache/acme/app/shared/"]
        );
        assert!(!trusted.read_prefixes().contains(&fork.write_prefix()));
        // Unknown trust is untrusted; no repository, no caches.
        let unknown = json!({"jobConfig": {"event": {"sourceRepo": "acme/app"}}});
        assert!(Namespace::of("r", &unknown).unwrap().isolated_run.is_some());
        assert!(Namespace::of("r", &json!({"jobConfig": {"event": {}}})).is_none());
        assert!(
            Namespace::of("r", &json!({"jobConfig": {"event": {"sourceRepo": "/x"}}})).is_none()
        );
    }

    #[test]
    fn keys_are_segments_and_listings_find_only_entries() {
        let p = "cache/acme/app/shared/";
        assert_eq!(
            entry_key(p, "npm-linux/v1"),
            "cache/acme/app/shared/npm-linux_v1.tar.gz"
        );
        assert_eq!(entry_key(p, ".."), "cache/acme/app/shared/_...tar.gz");
        let tmp = temp_key(p, "job", "k");
        assert_eq!(listed_entry(p, &tmp), None);
        assert_eq!(listed_entry(p, &entry_key(p, "k")), Some("k"));
        assert_eq!(listed_entry(p, "cache/acme/app/shared/k.tar.gz.hash"), None);
        assert_eq!(listed_entry(p, "cache/acme/app/other/k.tar.gz"), None);
        assert!(is_entry("cache/acme/app/iso/r/k.tar.gz") && !is_entry(&tmp));
        assert_eq!(segment("a b/ü:c"), "a_b___c");
        assert_eq!((segment("."), segment("")), ("_.".into(), "_".into()));
        assert!(check_key("").is_err() && check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn the_quota_evicts_the_least_recently_used() {
        let e = |key: &str, size, at| Entry {
            key: key.into(),
            size,
            last_access_ms: at,
        };
        let entries = vec![e("new", 40, 3), e("old", 40, 1), e("mid", 40, 2)];
        assert_eq!(evictions(entries.clone(), 120), Vec::<String>::new());
        assert_eq!(evictions(entries.clone(), 80), ["old"]);
        assert_eq!(evictions(entries.clone(), 79), ["old", "mid"]);
        assert_eq!(evictions(entries, 0), ["old", "mid", "new"]);
        // Sizes at the limit do not overflow the total.
        let huge = vec![e("a", u64::MAX, 1), e("b", u64::MAX, 2)];
        assert_eq!(evictions(huge, u64::MAX), ["a"]);
    }

    proptest! {
        #[test]
        fn a_segment_is_always_a_valid_key_segment(s in ".{0,64}") {
            let seg = segment(&s);
            prop_assert!(!seg.is_empty() && seg != "." && seg != "..");
            prop_assert!(seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
            let key = entry_key("cache/o/r/shared/", &s);
            prop_assert!(crate::storage::keys::validate(&key).is_ok(), "{}", key);
        }

        #[test]
        fn evictions_leave_at_most_the_quota(sizes in proptest::collection::vec((0u64..u64::MAX / 4, 0i64..100), 0..20), quota in 0u64..u64::MAX) {
            let entries: Vec<Entry> = sizes.iter().enumerate()
                .map(|(i, (s, t))| Entry { key: i.to_string(), size: *s, last_access_ms: *t }).collect();
            let gone = evictions(entries.clone(), quota);
            let left: u128 = entries.iter().filter(|e| !gone.contains(&e.key)).map(|e| u128::from(e.size)).sum();
            prop_assert!(left <= u128::from(quota));
            // Never an entry more recent than one kept.
            for g in &gone {
                let ga = entries.iter().find(|e| &e.key == g).unwrap().last_access_ms;
                for k in entries.iter().filter(|e| !gone.contains(&e.key)) {
                    prop_assert!(ga <= k.last_access_ms);
                }
            }
        }
    }
}
