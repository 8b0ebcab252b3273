//! Installation tokens for the pipeline and for jobs: the App's private key (read from the
//! encrypted secrets only when a token must be minted) signs an App JWT, which buys a token
//! scoped to one repository and the permissions asked for (`github::repo::InstallationTokens`,
//! which caches them). Jobs get theirs when they are sent, from the reference the planner stored
//! (`pipeline::credentials`); the daemon hands [`Mint`] to the agent link as its
//! `runs::credentials::JobCredentials`, so the agent module knows nothing of GitHub.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::credentials::CredentialRef;
use crate::{
    crypto::SecretBox,
    db::{self, Pool},
    github::{
        repo::{repo_part, InstallationTokens, TokenError, TokenScope},
        AppKey, GitHubApi,
    },
    runs::credentials::{CredentialsError, JobCredentials},
    sources::registry::SourceRegistry,
};

#[derive(Clone)]
pub struct Mint {
    pub pool: Pool,
    pub secrets: SecretBox,
    pub github: GitHubApi,
    pub tokens: Arc<InstallationTokens>,
    pub registry: Arc<SourceRegistry>,
}

impl Mint {
    /// A token of the App behind `routing_key` (`github:<appId>`) for `installation_id`, limited
    /// to `scope`.
    pub fn token(
        &self,
        routing_key: &str,
        installation_id: u64,
        scope: &TokenScope,
    ) -> Result<String, CredentialsError> {
        self.try_token(routing_key, installation_id, scope)
            .map_err(|e| CredentialsError(e.to_string()))
    }

    /// [`Mint::token`], keeping GitHub's refusal apart (the check reporter tells a missing
    /// permission from an outage by it).
    pub fn try_token(
        &self,
        routing_key: &str,
        installation_id: u64,
        scope: &TokenScope,
    ) -> Result<String, MintError> {
        let app_id = routing_key.strip_prefix("github:").ok_or_else(|| {
            format!("routing key {routing_key:?} is not a GitHub App's (github:<appId>)")
        })?;
        let source_id = self
            .registry
            .snapshot()
            .github(routing_key)
            .map(|s| s.id.clone())
            .ok_or_else(|| {
                format!("no GitHub source {routing_key} any more (removed?); add it back to run its jobs")
            })?;
        let key = || -> Result<AppKey, String> {
            let pem = self
                .pool
                .with_retry(|c| {
                    db::secrets::get(
                        c,
                        &self.secrets,
                        &db::secrets::github_scope(&source_id),
                        db::sources::PRIVATE_KEY,
                    )
                })
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("the source {routing_key} has no private key; set it with `kici-admin source update`"))?;
            AppKey::from_pem(&pem)
                .map_err(|e| format!("the private key of source {routing_key} is unusable: {e}"))
        };
        let now = jiff::Timestamp::now().as_second();
        self.tokens
            .get(&self.github, app_id, key, installation_id, scope, now)
            .map_err(MintError::Token)
    }
}

/// Why [`Mint::try_token`] has no token: the source is not set up for it (no such source, no
/// key), or the token request failed.
#[derive(Debug)]
pub enum MintError {
    Setup(String),
    Token(TokenError),
}

impl From<String> for MintError {
    fn from(m: String) -> MintError {
        MintError::Setup(m)
    }
}

impl std::fmt::Display for MintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MintError::Setup(m) => f.write_str(m),
            MintError::Token(e) => e.fmt(f),
        }
    }
}

impl JobCredentials for Mint {
    /// `token` and `sourceAuth` for the frame, minted for the job's one repository.
    fn frame_fields(&self, reference: &Value) -> Result<Map<String, Value>, CredentialsError> {
        let r = CredentialRef::from_value(reference)?;
        if r.provider != "github" {
            return Err(CredentialsError(format!(
                "the job's credentials are for provider {:?}, which has no tokens",
                r.provider
            )));
        }
        let scope = TokenScope {
            repository: repo_part(&r.repository).to_owned(),
            permissions: r.effective_permissions(),
        };
        let token = self
            .token(&r.routing_key, r.installation_id, &scope)
            .map_err(|e| format!("could not get a token for {}: {e}", r.repository))?;
        let mut fields = Map::new();
        fields.insert("token".into(), json!(token));
        fields.insert(
            "sourceAuth".into(),
            json!({"kind": "basic", "user": "x-access-token", "secret": token}),
        );
        Ok(fields)
    }
}
