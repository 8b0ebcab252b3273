//! The master key settings: `KICI_SECRET_KEY` (or `KICI_SECRET_KEY_FILE`) and, during rotation,
//! `KICI_SECRET_KEY_OLD` (or `KICI_SECRET_KEY_FILE_OLD`) (docs/operations.md, "Secrets at rest").
//! A key comes from the variable or from a file, never both; no message ever shows it.

use std::io::Read;

use super::Loader;
use crate::crypto::SecretKey;

/// A key file holds one key (at most ~90 characters). The bound keeps a wrong path such as
/// `/dev/zero` or a log file from stalling boot or filling memory.
pub(super) const KEY_FILE_LIMIT: u64 = 4096;

pub(super) const SECRET_KEY_REQUIRED: &str = "is required: 64 hex characters or base64 of exactly 32 bytes \
     (generate one with: openssl rand -hex 32), or set KICI_SECRET_KEY_FILE to a file containing it";
impl Loader {
    /// Never shows the key: a message carries only the variable, the path and the parse error.
    pub(super) fn key(&mut self, name: &str, file_name: &str, required: bool) -> Option<SecretKey> {
        let value = self.get(name).filter(|v| !v.trim().is_empty());
        match (value, self.get(file_name)) {
            (Some(_), Some(_)) => {
                let why = format!("removing {name} keeps the key out of the process environment");
                self.problem(
                    name,
                    format!("cannot be set together with {file_name}; remove one of them ({why})"),
                );
                None
            }
            (Some(key), None) => SecretKey::parse(key.trim())
                .map_err(|e| self.problem(name, e))
                .ok(),
            (None, Some(path)) => {
                let key = read_key_file(&path)
                    .map_err(|message| self.problem(file_name, message))
                    .ok()?;
                SecretKey::parse(&key)
                    .map_err(|e| self.problem(file_name, format!("file '{path}': {e}")))
                    .ok()
            }
            (None, None) => {
                let reported = [name, file_name]
                    .iter()
                    .any(|n| self.unreadable.contains(*n));
                if required && !reported {
                    self.problem(name, SECRET_KEY_REQUIRED);
                }
                None
            }
        }
    }
}

fn read_key_file(path: &str) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read file '{path}': {e}");
    let mut text = String::new();
    let file = std::fs::File::open(path).map_err(cannot)?;
    file.take(KEY_FILE_LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > KEY_FILE_LIMIT {
        return Err(format!(
            "file '{path}' is larger than {KEY_FILE_LIMIT} bytes; it must hold only the key"
        ));
    }
    match text.trim() {
        "" => Err(format!("file '{path}' is empty")),
        key => Ok(key.to_owned()),
    }
}
