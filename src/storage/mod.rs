//! Object storage for caches, logs and uploads (docs/operations.md, "Object storage"): an
//! S3-compatible store reached through presigned URLs, or a folder served by the orchestrator's
//! signed blob routes.
//!
//! Pure parts: the key layout (`keys`), SigV4 presigning (`presign`), blob tokens
//! (`blob_token`), lifecycle rules (`lifecycle`), XML (`xml`), errors (`error`) and TTL freshness
//! (here). I/O: `s3` (ureq) and `fs` (files). `check` proves a configuration end to end. Callers
//! pass the clock (`now`) in, so TTL and expiry are testable without waiting.
//!
//! Keys given to `Storage` are logical (`source/<hash>.tar.gz`); `KICI_STORAGE_PREFIX` is
//! prepended here, once, for both backends.

pub mod blob_token;
pub mod check;
mod error;
pub mod fs;
pub mod keys;
pub mod lifecycle;
pub mod presign;
pub mod s3;
mod xml;

pub use error::StorageError;

use std::{path::PathBuf, time::Duration};

use jiff::Timestamp;

use crate::config::{StorageConfig, StorageType};
use crate::crypto::SecretKey;
use presign::{Presigner, S3Credentials, Verb};

/// Which bucket: caches, bundles and uploads, or logs (the same bucket unless split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Cache,
    Logs,
}

/// Who will use a URL, hence which endpoint is baked into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The orchestrator itself (`KICI_STORAGE_ENDPOINT`).
    Internal,
    /// Agents (`KICI_STORAGE_EXTERNAL_ENDPOINT`, else the endpoint).
    Agent,
    /// The developer machine running `kici run remote` (`KICI_STORAGE_UPLOAD_ENDPOINT`, else
    /// the endpoint).
    Upload,
}

impl Audience {
    pub const ALL: [Audience; 3] = [Audience::Internal, Audience::Agent, Audience::Upload];

    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Internal => "internal",
            Audience::Agent => "agent",
            Audience::Upload => "upload",
        }
    }
}

/// `x-amz-meta-created-at` / `last-accessed-at` (or the filesystem sidecar). An object without
/// them was uploaded but never committed, and reads as a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub created_at: Timestamp,
    pub last_accessed_at: Timestamp,
}

impl Meta {
    pub fn new(now: Timestamp) -> Meta {
        Meta {
            created_at: now,
            last_accessed_at: now,
        }
    }

    pub fn parse(created: Option<&str>, accessed: Option<&str>) -> Option<Meta> {
        Some(Meta {
            created_at: created?.trim().parse().ok()?,
            last_accessed_at: accessed?.trim().parse().ok()?,
        })
    }

    /// ISO 8601 with milliseconds, as the reference writes them.
    pub fn to_strings(&self) -> (String, String) {
        let iso = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        (iso(self.created_at), iso(self.last_accessed_at))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub meta: Option<Meta>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub last_modified: String,
}

/// What a cache entry's metadata says about it (docs/operations.md, "Object storage", TTL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh(Meta),
    /// Not accessed for longer than the TTL: delete it and report a miss.
    Expired,
    /// No metadata: uploaded but not committed yet; a miss, left alone.
    Uncommitted,
}

/// Expired when `now − lastAccessedAt > ttl` (strictly).
pub fn freshness(meta: Option<&Meta>, now: Timestamp, ttl: Duration) -> Freshness {
    match meta {
        None => Freshness::Uncommitted,
        Some(m) => {
            let idle = now.as_millisecond() - m.last_accessed_at.as_millisecond();
            if idle > ttl.as_millis() as i64 {
                Freshness::Expired
            } else {
                Freshness::Fresh(*m)
            }
        }
    }
}

pub enum Backend {
    S3(Box<s3::S3Store>),
    Fs(fs::FsStore),
}

/// An opened store: backend, prefix, buckets and the cache TTL.
pub struct Storage {
    backend: Backend,
    prefix: String,
    cache_bucket: String,
    log_bucket: String,
    ttl: Duration,
    user_cache_quota: u64,
    user_cache_ttl: Duration,
}

/// What `Storage::open` needs besides the storage settings.
pub struct OpenParams<'a> {
    pub ttl_days: u32,
    /// Required for the filesystem backend (its URLs are signed with a key derived from it).
    pub secret_key: Option<&'a SecretKey>,
    pub secret_key_old: Option<&'a SecretKey>,
    /// The orchestrator's own URL with its base path (the filesystem backend's default base).
    pub default_base_url: String,
    /// Reads `AWS_*` variables.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Storage {
    /// Builds the store for a validated configuration. S3 needs credentials: the `AWS_*`
    /// variables or the shared credentials file.
    pub fn open(cfg: &StorageConfig, p: &OpenParams<'_>) -> Result<Storage, String> {
        let ttl = Duration::from_secs(u64::from(p.ttl_days) * 86_400);
        let backend = match cfg.kind {
            StorageType::Filesystem => {
                let root: PathBuf = cfg
                    .fs_path
                    .clone()
                    .ok_or("KICI_STORAGE_FS_PATH is not set")?;
                let base = cfg
                    .fs_base_url
                    .clone()
                    .unwrap_or_else(|| p.default_base_url.clone());
                let key = p.secret_key.ok_or(
                    "KICI_SECRET_KEY is required for filesystem storage (its signed URLs are keyed from it)",
                )?;
                let mut signing = vec![blob_token::SigningKey::derive(key)];
                signing.extend(p.secret_key_old.map(blob_token::SigningKey::derive));
                Backend::Fs(fs::FsStore::new(root, &base, signing))
            }
            StorageType::S3 => Backend::S3(Box::new(open_s3(cfg, p.env)?)),
        };
        let cache_bucket = cfg.bucket.clone().unwrap_or_default();
        Ok(Storage {
            log_bucket: cfg
                .log_bucket
                .clone()
                .unwrap_or_else(|| cache_bucket.clone()),
            cache_bucket,
            backend,
            prefix: cfg.prefix.clone(),
            ttl,
            user_cache_quota: cfg.user_cache_quota_bytes,
            user_cache_ttl: Duration::from_millis(cfg.user_cache_ttl_ms),
        })
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long an entry may go unread: `KICI_USER_CACHE_TTL_MS` for workflow caches
    /// (`cache/…`), `KICI_CACHE_TTL_DAYS` for the rest.
    pub fn ttl_for(&self, key: &str) -> Duration {
        if key.starts_with("cache/") {
            self.user_cache_ttl
        } else {
            self.ttl
        }
    }

    /// `KICI_USER_CACHE_QUOTA_BYTES`: workflow-cache bytes per organization.
    pub fn user_cache_quota(&self) -> u64 {
        self.user_cache_quota
    }

    /// One line for the boot log.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Fs(f) => format!(
                "filesystem storage in {} (signed URLs under {})",
                f.root().display(),
                f.base_url()
            ),
            Backend::S3(s) => {
                let logs = if self.log_bucket == self.cache_bucket {
                    String::new()
                } else {
                    format!(", logs in bucket {}", self.log_bucket)
                };
                format!(
                    "S3 storage: bucket {} at {}{}{logs}",
                    self.cache_bucket,
                    s.internal.endpoint(),
                    if self.prefix.is_empty() {
                        String::new()
                    } else {
                        format!(", prefix {:?}", self.prefix)
                    }
                )
            }
        }
    }

    pub fn bucket(&self, area: Area) -> &str {
        match area {
            Area::Cache => &self.cache_bucket,
            Area::Logs => &self.log_bucket,
        }
    }

    /// The stored key: prefix + logical key, validated.
    pub fn full_key(&self, key: &str) -> Result<String, StorageError> {
        let full = format!("{}{key}", self.prefix);
        keys::validate(&full)
            .map_err(|e| StorageError::Invalid(format!("invalid key {full:?}: {}", e.0)))?;
        Ok(full)
    }

    /// A URL for `verb` (GET or PUT) on `key`, for `audience`, valid `lifetime` from `now`.
    pub fn presign(
        &self,
        area: Area,
        key: &str,
        verb: Verb,
        audience: Audience,
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<String, StorageError> {
        let full = self.full_key(key)?;
        match &self.backend {
            Backend::Fs(f) => Ok(f.url(&full, verb.as_str(), lifetime, now)),
            Backend::S3(s) => {
                let signer = match audience {
                    Audience::Internal => &s.internal,
                    Audience::Agent => &s.external,
                    Audience::Upload => &s.upload,
                };
                signer
                    .sign(
                        verb,
                        self.bucket(area),
                        Some(&full),
                        &[],
                        &[],
                        lifetime,
                        now,
                    )
                    .map(|u| u.to_string())
                    .map_err(StorageError::Invalid)
            }
        }
    }

    pub fn head(&self, area: Area, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let full = self.full_key(key)?;
        match &self.backend {
            Backend::Fs(f) => f.head(&full),
            Backend::S3(s) => s.head(self.bucket(area), &full),
        }
    }

    pub fn get(&self, area: Area, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let full = self.full_key(key)?;
        match &self.backend {
            Backend::Fs(f) => f.get(&full),
            Backend::S3(s) => s.get(self.bucket(area), &full),
        }
    }

    /// Writes an object the orchestrator produced itself, committed at once when `meta` is set.
    pub fn put(
        &self,
        area: Area,
        key: &str,
        body: &[u8],
        meta: Option<&Meta>,
    ) -> Result<(), StorageError> {
        let full = self.full_key(key)?;
        match &self.backend {
            Backend::Fs(f) => f.put(&full, body, meta),
            Backend::S3(s) => s.put(self.bucket(area), &full, body, meta),
        }
    }

    /// Appends to an object (created when missing): logs. The filesystem appends in place; S3
    /// has no append, so the object is read and written back whole (callers batch their writes).
    pub fn append(&self, area: Area, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let full = self.full_key(key)?;
        match &self.backend {
            Backend::Fs(f) => f.append(&full, bytes),
            Backend::S3(s) => {
                let mut body = s.get(self.bucket(area), &full)?.unwrap_or_default();
                body.extend_from_slice(bytes);
                s.put(self.bucket(area), &full, &body, None)
            }
        }
    }

    /// Replaces an object's metadata; `Ok(false)` when it does not exist.
    pub fn set_meta(&self, area: Area, key: &str, meta: &Meta) -> Result<bool, StorageError> {
        let full = self.full_key(key)?;
        match &self.backend {
            Backend::Fs(f) => f.set_meta(&full, meta),
            Backend::S3(s) => s.set_meta(self.bucket(area), &full, meta),
        }
    }

    /// `initMeta`: the second phase of an upload through a presigned PUT (on `*.complete`).
    pub fn commit(&self, area: Area, key: &str, now: Timestamp) -> Result<bool, StorageError> {
        self.set_meta(area, key, &Meta::new(now))
    }

    /// Moves an uploaded object to its final key with fresh metadata (a user cache's temp-then-final
    /// write); `Ok(false)` when `from` does not exist.
    pub fn promote(
        &self,
        area: Area,
        from: &str,
        to: &str,
        meta: &Meta,
    ) -> Result<bool, StorageError> {
        let (from_full, to_full) = (self.full_key(from)?, self.full_key(to)?);
        match &self.backend {
            Backend::Fs(f) => f.rename(&from_full, &to_full, meta),
            Backend::S3(s) => {
                let bucket = self.bucket(area);
                if !s.copy(bucket, &from_full, &to_full, meta)? {
                    return Ok(false);
                }
                s.delete(bucket, &from_full)?;
                Ok(true)
            }
        }
    }

    pub fn delete(&self, area: Area, key: &str) -> Result<(), StorageError> {
        let full = self.full_key(key)?;
        match &self.backend {
            Backend::Fs(f) => f.delete(&full),
            Backend::S3(s) => s.delete(self.bucket(area), &full),
        }
    }

    /// Objects under a logical prefix, newest first, with logical keys.
    pub fn list(&self, area: Area, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let full = format!("{}{prefix}", self.prefix);
        let mut found = match &self.backend {
            Backend::Fs(f) => f.list(&full)?,
            Backend::S3(s) => s.list(self.bucket(area), &full)?,
        };
        for item in &mut found {
            item.key = item.key[self.prefix.len()..].to_owned();
        }
        Ok(found)
    }

    /// A cache entry's metadata if it is fresh: an expired entry is deleted, and a hit touches
    /// it (its last access becomes `now`), so entries in use never expire.
    fn fresh(&self, key: &str, now: Timestamp) -> Result<Option<ObjectInfo>, StorageError> {
        let Some(info) = self.head(Area::Cache, key)? else {
            return Ok(None);
        };
        match freshness(info.meta.as_ref(), now, self.ttl_for(key)) {
            Freshness::Uncommitted => Ok(None),
            Freshness::Expired => {
                self.delete(Area::Cache, key)?;
                Ok(None)
            }
            Freshness::Fresh(meta) => {
                let touched = Meta {
                    created_at: meta.created_at,
                    last_accessed_at: now,
                };
                self.set_meta(Area::Cache, key, &touched)?;
                Ok(Some(ObjectInfo {
                    meta: Some(touched),
                    ..info
                }))
            }
        }
    }

    /// A fresh cache entry's size and metadata (touched), or `None` for a miss (an expired entry
    /// is deleted).
    pub fn cached_head(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<ObjectInfo>, StorageError> {
        self.fresh(key, now)
    }

    /// A download URL for a fresh cache entry (15 minutes), or `None` for a miss.
    pub fn cached_url(
        &self,
        key: &str,
        audience: Audience,
        now: Timestamp,
    ) -> Result<Option<String>, StorageError> {
        if self.fresh(key, now)?.is_none() {
            return Ok(None);
        }
        let lifetime = presign::GET_LIFETIME;
        self.presign(Area::Cache, key, Verb::Get, audience, lifetime, now)
            .map(Some)
    }

    /// A fresh cache entry's bytes (hash and size companions), or `None` for a miss.
    pub fn cached_bytes(&self, key: &str, now: Timestamp) -> Result<Option<Vec<u8>>, StorageError> {
        if self.fresh(key, now)?.is_none() {
            return Ok(None);
        }
        self.get(Area::Cache, key)
    }

    /// An upload URL (30 minutes); the upload becomes visible after `commit`.
    pub fn upload_url(
        &self,
        area: Area,
        key: &str,
        audience: Audience,
        now: Timestamp,
    ) -> Result<String, StorageError> {
        self.presign(area, key, Verb::Put, audience, presign::PUT_LIFETIME, now)
    }
}

/// The three presigners of an S3 configuration.
fn open_s3(
    cfg: &StorageConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<s3::S3Store, String> {
    let region = cfg.region.clone().ok_or("KICI_STORAGE_REGION is not set")?;
    let credentials = s3_credentials(env)?;
    let endpoint = cfg
        .endpoint
        .clone()
        .unwrap_or_else(|| presign::aws_endpoint(&region));
    let make = |url: &Option<String>, var: &str| {
        let url = url.clone().unwrap_or_else(|| endpoint.clone());
        Presigner::new(&url, cfg.force_path_style, &region, credentials.clone())
            .map_err(|e| format!("{var}: {e}"))
    };
    Ok(s3::S3Store::new(
        make(&cfg.endpoint, "KICI_STORAGE_ENDPOINT")?,
        make(&cfg.external_endpoint, "KICI_STORAGE_EXTERNAL_ENDPOINT")?,
        make(&cfg.upload_endpoint, "KICI_STORAGE_UPLOAD_ENDPOINT")?,
    ))
}

/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, else the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`, profile `AWS_PROFILE`).
pub fn s3_credentials(env: &dyn Fn(&str) -> Option<String>) -> Result<S3Credentials, String> {
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .filter(|f| !f.is_empty())
        .or_else(|| env("HOME").map(|h| format!("{h}/.aws/credentials")));
    let text = file
        .as_deref()
        .and_then(|f| std::fs::read_to_string(f).ok());
    let profile = env("AWS_PROFILE")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into());
    S3Credentials::resolve(env, text.as_deref(), &profile).ok_or_else(|| {
        "S3 storage needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
         AWS_SESSION_TOKEN for temporary ones), or put them in ~/.aws/credentials"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn ttl_is_measured_from_the_last_access() {
        let ttl = Duration::from_secs(30 * 86_400);
        let meta = Meta {
            created_at: t("2026-01-01T00:00:00Z"),
            last_accessed_at: t("2026-02-01T00:00:00Z"),
        };
        assert_eq!(
            freshness(None, t("2026-02-01T00:00:00Z"), ttl),
            Freshness::Uncommitted
        );
        assert_eq!(
            freshness(Some(&meta), t("2026-03-03T00:00:00Z"), ttl),
            Freshness::Fresh(meta)
        );
        assert_eq!(
            freshness(Some(&meta), t("2026-03-03T00:00:00.001Z"), ttl),
            Freshness::Expired
        );
    }

    #[test]
    fn meta_round_trips_in_the_reference_format() {
        let m = Meta::new(t("2026-11-28T04:05:06.789Z"));
        let (c, a) = m.to_strings();
        assert_eq!(c, "2026-11-28T04:05:06.789Z");
        assert_eq!(Meta::parse(Some(&c), Some(&a)), Some(m));
        assert_eq!(Meta::parse(Some(&c), None), None);
        assert_eq!(Meta::parse(Some("yesterday"), Some(&a)), None);
    }
}
