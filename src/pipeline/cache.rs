//! The lock-file cache of the pipeline: a bounded LRU keyed by provider, repository and commit
//! (a commit's lock file never changes, so entries need no expiry).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

/// Lock files by (provider, repository, commit): a commit's lock file never changes, so the
/// cache needs no expiry, only a bound (`KICI_LOCKFILE_CACHE_MAX`'s default, 500).
/// The entries and their use order (least recent first).
type Entries = (HashMap<String, Arc<Vec<u8>>>, VecDeque<String>);

pub struct LockCache {
    entries: Mutex<Entries>,
    max: usize,
}

impl Default for LockCache {
    fn default() -> LockCache {
        LockCache {
            entries: Mutex::default(),
            max: 500,
        }
    }
}

impl LockCache {
    pub fn get(&self, key: &str) -> Option<Arc<Vec<u8>>> {
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let hit = g.0.get(key).cloned()?;
        // Most recently used at the back.
        g.1.retain(|k| k != key);
        g.1.push_back(key.to_owned());
        Some(hit)
    }

    pub fn put(&self, key: String, bytes: Vec<u8>) {
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.insert(key.clone(), Arc::new(bytes)).is_none() {
            g.1.push_back(key);
        }
        while g.1.len() > self.max {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
    }
}

/// A full commit id (only those are cached: a branch name or HEAD is read again).
pub fn is_commit(r: &str) -> bool {
    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_cache_is_a_bounded_lru() {
        let c = LockCache {
            entries: Mutex::default(),
            max: 2,
        };
        c.put("a".into(), b"1".to_vec());
        c.put("b".into(), b"2".to_vec());
        assert!(c.get("a").is_some()); // a is now the most recent
        c.put("c".into(), b"3".to_vec());
        assert!(c.get("b").is_none(), "the least recently used went");
        assert_eq!(c.get("a").as_deref().map(Vec::as_slice), Some(&b"1"[..]));
        assert!(c.get("c").is_some());
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("main") && !is_commit("HEAD"));
    }
}
