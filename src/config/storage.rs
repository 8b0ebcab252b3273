//! `KICI_STORAGE_*`: object storage settings, validated with the rest of the configuration and
//! used by the storage module (S3-compatible buckets or the filesystem backend).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{ConfigError, Loader, StorageConfig, StorageType};
use crate::crypto::SecretKey;

/// The storage settings alone (`kici-admin storage …`), with what the filesystem backend's signed
/// URLs need: the secret keys, the port and the base path.
pub struct StorageOnly {
    pub storage: Option<StorageConfig>,
    pub cache_ttl_days: u32,
    /// Present when the storage is a filesystem (required then) or when set.
    pub secret_key: Option<SecretKey>,
    pub secret_key_old: Option<SecretKey>,
    pub port: u16,
    pub base_path: String,
}

impl StorageOnly {
    /// Validates the storage variables among `vars` (other `KICI_*` names are ignored).
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<StorageOnly, ConfigError> {
        let vars = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("KICI_"));
        Loader::new(vars.collect(), BTreeSet::new()).load_storage()
    }
}

/// The filesystem backend's default URL for agents: this orchestrator on loopback.
pub fn default_blob_base_url(port: u16, base_path: &str) -> String {
    format!("http://127.0.0.1:{port}{base_path}")
}

impl Loader {
    /// `KICI_CACHE_TTL_DAYS`, default and minimum 30 (docs/operations.md, "Object storage"; the
    /// reference documents the minimum but does not enforce it).
    pub(super) fn cache_ttl_days(&mut self) -> u32 {
        use crate::storage::lifecycle::{MIN_TTL_DAYS, TTL_REASON};
        let ttl_rule = "must be a whole number of days, at least 30";
        let days = self.number("KICI_CACHE_TTL_DAYS", MIN_TTL_DAYS, ttl_rule);
        if days < MIN_TTL_DAYS {
            let got = self.get("KICI_CACHE_TTL_DAYS").unwrap_or_default();
            let message =
                format!("must be at least {MIN_TTL_DAYS} (days), got {got:?}: {TTL_REASON}");
            self.problem("KICI_CACHE_TTL_DAYS", message);
        }
        days
    }

    /// Only what the `storage` commands need, so they run without a database URL.
    fn load_storage(mut self) -> Result<StorageOnly, ConfigError> {
        let storage = self.storage();
        let cache_ttl_days = self.cache_ttl_days();
        let fs = storage
            .as_ref()
            .is_some_and(|s| s.kind == StorageType::Filesystem);
        let secret_key = self.key("KICI_SECRET_KEY", "KICI_SECRET_KEY_FILE", fs);
        let secret_key_old = self.key("KICI_SECRET_KEY_OLD", "KICI_SECRET_KEY_FILE_OLD", false);
        let port = self.number(
            "KICI_PORT",
            4000u16,
            "must be a whole number from 0 to 65535",
        );
        let base_path = self.base_path();
        if !self.problems.is_empty() {
            return Err(ConfigError {
                problems: self.problems,
                unknown_present: false,
            });
        }
        Ok(StorageOnly {
            storage,
            cache_ttl_days,
            secret_key,
            secret_key_old,
            port,
            base_path,
        })
    }

    pub(super) fn storage(&mut self) -> Option<StorageConfig> {
        if self.get("KICI_STORAGE_TYPE").is_none() {
            let set = self.vars.iter().filter(|(name, value)| {
                name.starts_with("KICI_STORAGE_")
                    && *name != "KICI_STORAGE_PATH"
                    && !value.is_empty()
            });
            let ignored: Vec<&str> = set.map(|(name, _)| name.as_str()).collect();
            if !ignored.is_empty() {
                let names = ignored.join(", ");
                let fix = "set it to s3 or filesystem to enable caching";
                let message =
                    format!("{names} ignored because KICI_STORAGE_TYPE is not set ({fix})");
                self.warnings.push(message);
            }
            return None;
        }
        let kinds = [
            ("s3", StorageType::S3),
            ("filesystem", StorageType::Filesystem),
        ];
        let kind = self.choice("KICI_STORAGE_TYPE", &kinds, StorageType::S3)?;
        let http = ["http://", "https://"];
        let user_cache_quota_bytes = self.number(
            "KICI_USER_CACHE_QUOTA_BYTES",
            crate::caches::user::DEFAULT_QUOTA_BYTES,
            "must be a whole number of bytes",
        );
        let user_cache_ttl_ms = self.number(
            "KICI_USER_CACHE_TTL_MS",
            crate::caches::user::DEFAULT_TTL_MS,
            "must be a whole number of milliseconds",
        );
        if user_cache_ttl_ms == 0 {
            self.problem(
                "KICI_USER_CACHE_TTL_MS",
                "must be more than 0 (milliseconds; the default is 604800000, 7 days)",
            );
        }
        let mut storage = StorageConfig {
            kind,
            bucket: None,
            prefix: String::new(),
            region: None,
            endpoint: None,
            external_endpoint: None,
            upload_endpoint: None,
            force_path_style: false,
            log_bucket: None,
            fs_path: None,
            fs_base_url: None,
            user_cache_quota_bytes,
            user_cache_ttl_ms,
        };
        if kind == StorageType::Filesystem {
            let path = self.required(
                "KICI_STORAGE_FS_PATH",
                "is required when KICI_STORAGE_TYPE is filesystem",
            );
            storage.fs_path = path
                .filter(|p| Path::new(p).is_absolute())
                .map(PathBuf::from);
            if let (Some(path), None) = (self.get("KICI_STORAGE_FS_PATH"), &storage.fs_path) {
                self.problem(
                    "KICI_STORAGE_FS_PATH",
                    format!("must be an absolute path, got {path:?}"),
                );
            }
            storage.fs_base_url = self.url("KICI_STORAGE_FS_BASE_URL", &http);
            return Some(storage);
        }
        storage.bucket = self.required(
            "KICI_STORAGE_BUCKET",
            "is required when KICI_STORAGE_TYPE is s3",
        );
        let region_rule = "is required when KICI_STORAGE_TYPE is s3 (any value such as us-east-1 works for non-AWS stores like MinIO)";
        storage.region = self.required("KICI_STORAGE_REGION", region_rule);
        storage.prefix = self.get("KICI_STORAGE_PREFIX").unwrap_or_default();
        storage.endpoint = self.url("KICI_STORAGE_ENDPOINT", &http);
        storage.external_endpoint = self.url("KICI_STORAGE_EXTERNAL_ENDPOINT", &http);
        storage.upload_endpoint = self.url("KICI_STORAGE_UPLOAD_ENDPOINT", &http);
        storage.force_path_style = self.choice(
            "KICI_STORAGE_FORCE_PATH_STYLE",
            &[("true", true), ("false", false)],
            false,
        ) == Some(true);
        storage.log_bucket = self.get("KICI_STORAGE_LOG_BUCKET");
        Some(storage)
    }
}
