//! What can go wrong talking to object storage, in words an operator can act on (the messages
//! name the operation, the URL and the store's own error code).

use std::fmt;

/// A storage operation that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// No HTTP answer: refused, DNS, TLS, timeout.
    Unreachable {
        url: String,
        detail: String,
    },
    /// The store answered with an error status.
    Refused {
        op: String,
        url: String,
        status: u16,
        code: String,
        message: String,
        region: Option<String>,
    },
    Io(String),
    Invalid(String),
    TooLarge {
        max: u64,
    },
}

impl StorageError {
    pub fn code_is(&self, wanted: &str) -> bool {
        matches!(self, StorageError::Refused { code, .. } if code == wanted)
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Unreachable { url, detail } => write!(f, "cannot reach {url}: {detail}"),
            StorageError::Refused {
                op,
                url,
                status,
                code,
                message,
                ..
            } => {
                write!(f, "{op} {url}: HTTP {status}")?;
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            StorageError::Io(m) | StorageError::Invalid(m) => f.write_str(m),
            StorageError::TooLarge { max } => write!(f, "larger than the {max}-byte limit"),
        }
    }
}

impl std::error::Error for StorageError {}
