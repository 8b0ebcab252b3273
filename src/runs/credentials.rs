//! A queued job's credentials, as the queue and the agent link share them: the queue holds only
//! an opaque reference under [`CREDENTIALS_KEY`] in the job's dispatch body, and whatever turns
//! it into frame fields (a [`JobCredentials`], injected by the daemon) is called when the job is
//! sent. So neither the queue nor the agent link knows how credentials are minted.

use std::fmt;

use serde_json::{Map, Value};

/// Where a queued job's credential reference sits in its dispatch body (never sent as is).
pub const CREDENTIALS_KEY: &str = "credentials";

/// Why a job's credentials could not be had (the job goes back to the queue with the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsError(pub String);

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CredentialsError {}

impl From<String> for CredentialsError {
    fn from(s: String) -> CredentialsError {
        CredentialsError(s)
    }
}

impl From<CredentialsError> for String {
    fn from(e: CredentialsError) -> String {
        e.0
    }
}

impl From<&str> for CredentialsError {
    fn from(s: &str) -> CredentialsError {
        CredentialsError(s.to_owned())
    }
}

pub trait JobCredentials: Send + Sync {
    /// The fields to add to the frame for `reference` (`token`, `sourceAuth`), or why they cannot
    /// be had.
    fn frame_fields(&self, reference: &Value) -> Result<Map<String, Value>, CredentialsError>;
}
