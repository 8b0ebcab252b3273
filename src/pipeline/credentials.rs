//! A job's repository credentials, as a reference (pure). The queue never holds a token: the
//! planner stores this reference in the job's dispatch body under [`DISPATCH_KEY`], and when the
//! job is sent to an agent (`Hub::drain`) the daemon's minter (`pipeline::mint`) turns it into a
//! fresh installation token for that one repository with these permissions. So a stored row leaks
//! nothing, a job that waited on `needs` for hours still gets a live token, and each job's token
//! can do no more than clone its own repository.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::runs::credentials::CredentialsError;

/// Where the reference sits in `dispatch_queue.dispatch` (removed from the frame sent).
pub const DISPATCH_KEY: &str = crate::runs::credentials::CREDENTIALS_KEY;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRef {
    /// `github` (the only provider whose jobs need a token; local repositories are cloned from
    /// the filesystem or the source's clone URL).
    pub provider: String,
    /// `github:<appId>`: which source's App key signs the token request.
    pub routing_key: String,
    pub app_id: String,
    pub installation_id: u64,
    /// `owner/name`.
    pub repository: String,
    /// GitHub App permission → `read` / `write`.
    pub permissions: BTreeMap<String, String>,
    /// The job runs code a fork wrote: its token never gets more than read access.
    pub fork_pull_request: bool,
}

/// The permissions a job's token asks for: read access to the repository's contents, the least
/// that lets the agent clone it. The lock file has no permissions field (docs/architecture.md,
/// Lock file), so there is nothing a workflow could add.
pub fn job_permissions() -> BTreeMap<String, String> {
    BTreeMap::from([("contents".to_owned(), "read".to_owned())])
}

impl CredentialRef {
    /// Reads a stored reference; the error names what is wrong with it.
    pub fn from_value(v: &Value) -> Result<CredentialRef, CredentialsError> {
        serde_json::from_value(v.clone()).map_err(|e| {
            CredentialsError(format!(
                "the job's stored credential reference is unusable ({e})"
            ))
        })
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// What the token request asks for: the stored permissions, every one lowered to `read` for
    /// a fork's pull request (and anything that is not `read`/`write` dropped), never empty.
    pub fn effective_permissions(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .permissions
            .iter()
            .filter(|(_, level)| *level == "read" || *level == "write")
            .map(|(name, level)| {
                let level = if self.fork_pull_request {
                    "read"
                } else {
                    level.as_str()
                };
                (name.clone(), level.to_owned())
            })
            .collect();
        out.entry("contents".to_owned())
            .or_insert_with(|| "read".to_owned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reference(permissions: BTreeMap<String, String>, fork: bool) -> CredentialRef {
        CredentialRef {
            provider: "github".into(),
            routing_key: "github:7".into(),
            app_id: "7".into(),
            installation_id: 42,
            repository: "acme/app".into(),
            permissions,
            fork_pull_request: fork,
        }
    }

    #[test]
    fn jobs_ask_for_contents_read_only() {
        let r = reference(job_permissions(), false);
        assert_eq!(
            serde_json::to_value(r.effective_permissions()).unwrap(),
            json!({"contents": "read"})
        );
    }

    #[test]
    fn a_fork_pull_request_never_gets_more_than_read() {
        let wants = BTreeMap::from([
            ("contents".to_owned(), "write".to_owned()),
            ("issues".to_owned(), "write".to_owned()),
            ("checks".to_owned(), "admin".to_owned()),
        ]);
        let fork = reference(wants.clone(), true).effective_permissions();
        assert_eq!(
            serde_json::to_value(&fork).unwrap(),
            json!({"contents": "read", "issues": "read"})
        );
        // The same reference for a branch of the repository itself keeps write.
        let own = reference(wants, false).effective_permissions();
        assert_eq!(own["contents"], "write");
        // Never an empty request (GitHub would grant every permission of the App).
        assert_eq!(
            serde_json::to_value(reference(BTreeMap::new(), false).effective_permissions())
                .unwrap(),
            json!({"contents": "read"})
        );
    }

    #[test]
    fn a_reference_round_trips_and_bad_ones_say_why() {
        let r = reference(job_permissions(), true);
        let v = r.to_value();
        assert_eq!(v["installationId"], 42);
        assert_eq!(v["forkPullRequest"], true);
        assert!(v.get("token").is_none());
        assert_eq!(CredentialRef::from_value(&v).unwrap(), r);
        let e = CredentialRef::from_value(&json!({"provider": "github"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("credential reference") && e.contains("routingKey"),
            "{e}"
        );
    }
}
