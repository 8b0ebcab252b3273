//! `KICI_STORAGE_*`: object storage settings, validated with the rest of the configuration and
//! used by the storage module (S3-compatible buckets or the filesystem backend).

use std::path::{Path, PathBuf};

use super::{Loader, StorageConfig, StorageType};

impl Loader {
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
