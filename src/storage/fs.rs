//! The filesystem backend (docs/operations.md, "Object storage"): blobs at `<root>/<key>`, metadata
//! in a `<key>.meta.json` sidecar `{"createdAt","lastAccessedAt"}`, every write atomic (a temp file
//! in `<root>/.kici-tmp/`, fsync, rename, fsync of the folder), and agents reach blobs through the
//! orchestrator's signed routes (`http/blob.rs`, tokens in `blob_token.rs`).

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::blob_token::{self, SigningKey, TokenError};
use super::keys::{self, FS_META_SUFFIX, FS_TMP_DIR};
use super::{Listed, Meta, ObjectInfo, StorageError};

#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    /// The orchestrator as agents reach it, with its base path, no trailing slash.
    base_url: String,
    /// Current key first, then the one derived from `KICI_SECRET_KEY_OLD`.
    keys: Vec<SigningKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sidecar {
    created_at: String,
    last_accessed_at: String,
}

fn io_error(what: &str, path: &Path, e: io::Error) -> StorageError {
    StorageError::Io(format!("{what} {}: {e}", path.display()))
}

impl FsStore {
    pub fn new(root: PathBuf, base_url: &str, keys: Vec<SigningKey>) -> FsStore {
        FsStore {
            root,
            base_url: base_url.trim_end_matches('/').to_owned(),
            keys,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Creates the root (and temp folder) if missing and proves it is writable.
    pub fn prepare(&self) -> Result<(), StorageError> {
        let tmp = self.root.join(FS_TMP_DIR);
        fs::create_dir_all(&tmp).map_err(|e| io_error("cannot create", &tmp, e))?;
        Ok(())
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        keys::validate(key)
            .map_err(|e| StorageError::Invalid(format!("invalid key {key:?}: {}", e.0)))?;
        Ok(self.root.join(key))
    }

    fn sidecar(&self, key: &str) -> Result<PathBuf, StorageError> {
        Ok(self.root.join(format!("{key}{FS_META_SUFFIX}"))).and_then(|p| self.path(key).map(|_| p))
    }

    /// A signed URL for `verb` (`GET` or `PUT`) valid for `lifetime` from `now`.
    pub fn url(&self, key: &str, verb: &str, lifetime: Duration, now: Timestamp) -> String {
        let expires = now.as_millisecond() + lifetime.as_millis() as i64;
        blob_token::url(&self.base_url, &self.keys[0], verb, key, expires)
    }

    pub fn verify(
        &self,
        token: &str,
        verb: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<(), TokenError> {
        blob_token::verify(&self.keys, token, verb, key, now.as_millisecond())
    }

    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path(key)?;
        let size = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("cannot stat", &path, e)),
        };
        Ok(Some(ObjectInfo {
            size,
            meta: self.read_meta(key)?,
        }))
    }

    fn read_meta(&self, key: &str) -> Result<Option<Meta>, StorageError> {
        let path = self.sidecar(key)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice::<Sidecar>(&bytes)
                .ok()
                .and_then(|s| Meta::parse(Some(&s.created_at), Some(&s.last_accessed_at)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot read", &path, e)),
        }
    }

    /// The blob opened for reading, with its length; `None` when absent.
    pub fn open(&self, key: &str) -> Result<Option<(File, u64)>, StorageError> {
        let path = self.path(key)?;
        match File::open(&path) {
            Ok(f) => {
                let meta = f
                    .metadata()
                    .map_err(|e| io_error("cannot stat", &path, e))?;
                Ok(meta.is_file().then_some((f, meta.len())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot open", &path, e)),
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let Some((mut f, len)) = self.open(key)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(len as usize);
        f.read_to_end(&mut out)
            .map_err(|e| io_error("cannot read", &self.root.join(key), e))?;
        Ok(Some(out))
    }

    pub fn put(&self, key: &str, body: &[u8], meta: Option<&Meta>) -> Result<(), StorageError> {
        self.put_stream(key, &mut &body[..], u64::MAX)?;
        match meta {
            Some(m) => self.write_sidecar(key, m),
            None => Ok(()),
        }
    }

    /// Streams `body` into place atomically: readers see the old blob or the whole new one.
    /// More than `max` bytes → `TooLarge` and nothing is replaced. Returns the length written.
    pub fn put_stream(
        &self,
        key: &str,
        body: &mut dyn Read,
        max: u64,
    ) -> Result<u64, StorageError> {
        let path = self.path(key)?;
        let written = self.atomic_write(&path, |file| {
            let mut limited = body.take(max.saturating_add(1));
            let n = io::copy(&mut limited, file)?;
            if n > max {
                return Err(io::Error::new(io::ErrorKind::FileTooLarge, "too large"));
            }
            Ok(n)
        });
        written.map_err(|e| match e.kind() {
            io::ErrorKind::FileTooLarge => StorageError::TooLarge { max },
            _ => io_error("cannot write", &path, e),
        })
    }

    fn write_sidecar(&self, key: &str, meta: &Meta) -> Result<(), StorageError> {
        let (created_at, last_accessed_at) = meta.to_strings();
        let json = serde_json::to_vec(&Sidecar {
            created_at,
            last_accessed_at,
        })
        .unwrap_or_default();
        let path = self.sidecar(key)?;
        self.atomic_write(&path, |f| f.write_all(&json).map(|_| json.len() as u64))
            .map(|_| ())
            .map_err(|e| io_error("cannot write", &path, e))
    }

    /// Appends to a blob, creating it (and its folders) when missing. Not atomic: for logs, where
    /// a torn last line is acceptable and a rewrite per chunk is not.
    pub fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, e))?;
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error("cannot open", &path, e))?;
        file.write_all(bytes)
            .map_err(|e| io_error("cannot append to", &path, e))
    }

    /// Writes fresh metadata next to an existing blob; `Ok(false)` when the blob is absent.
    pub fn set_meta(&self, key: &str, meta: &Meta) -> Result<bool, StorageError> {
        if self.head(key)?.is_none() {
            return Ok(false);
        }
        self.write_sidecar(key, meta)?;
        Ok(true)
    }

    /// Moves a blob to another key (a rename within the root) with `meta`; `Ok(false)` when
    /// `from` is absent.
    pub fn rename(&self, from: &str, to: &str, meta: &Meta) -> Result<bool, StorageError> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if !src.is_file() {
            return Ok(false);
        }
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, e))?;
        }
        fs::rename(&src, &dst).map_err(|e| io_error("cannot move", &src, e))?;
        let _ = fs::remove_file(self.sidecar(from)?);
        self.write_sidecar(to, meta)?;
        Ok(true)
    }

    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        for path in [self.path(key)?, self.sidecar(key)?] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("cannot delete", &path, e)),
            }
        }
        Ok(())
    }

    /// Every blob whose key starts with `prefix`, newest first.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let mut out = Vec::new();
        // Walk from the deepest folder the prefix names.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = self.root.join(dir_part);
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("cannot list", &dir, e)),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let Some(key) = rel.to_str().map(str::to_owned) else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                if key == FS_TMP_DIR || key.ends_with(FS_META_SUFFIX) {
                    continue;
                }
                if meta.is_dir() {
                    stack.push(path);
                } else if key.starts_with(prefix) {
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| Timestamp::try_from(t).ok())
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    out.push(Listed {
                        key,
                        size: meta.len(),
                        last_modified: modified,
                    });
                }
            }
        }
        out.sort_by(|a, b| b.last_modified.cmp(&a.last_modified));
        Ok(out)
    }

    /// Temp file in `<root>/.kici-tmp/` (same filesystem), fsync, rename over `path`, fsync the
    /// folder. The temp file is removed on any failure.
    fn atomic_write(
        &self,
        path: &Path,
        fill: impl FnOnce(&mut File) -> io::Result<u64>,
    ) -> io::Result<u64> {
        let tmp_dir = self.root.join(FS_TMP_DIR);
        fs::create_dir_all(&tmp_dir)?;
        let mut rand = [0u8; 8];
        let _ = getrandom::fill(&mut rand);
        let tmp = tmp_dir.join(format!("tmp-{}", crate::crypto::hex(&rand)));
        let result = (|| -> io::Result<u64> {
            let mut file = File::create(&tmp)?;
            let n = fill(&mut file)?;
            file.sync_all()?;
            drop(file);
            let parent = path.parent().unwrap_or(&self.root);
            fs::create_dir_all(parent)?;
            fs::rename(&tmp, path)?;
            if let Ok(dir) = File::open(parent) {
                let _ = dir.sync_all();
            }
            Ok(n)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}
