//! The install-time database work: testing the wizard's database URL, and adding the first
//! GitHub App source right away instead of collecting and dropping it as the reference does.
//!
//! The source is added through the database with the code the admin API's `POST /sources`
//! uses (`github::validate_app` against the instance's `KICI_GITHUB_API_URL`, then
//! `db::sources::create`), not later through the API: install is where the operator is, so a
//! wrong key or App ID is reported while they can fix it, no secret is parked on disk waiting
//! for a first start, and nothing depends on the daemon being up. The schema is migrated first
//! under the same advisory lock the daemon takes, so a daemon starting meanwhile is harmless.

use crate::{
    config::Config,
    crypto::SecretBox,
    db::{migrate, sources, Connector},
    github::{validate_app, GitHubApi, GitHubError, ValidationError},
    Error,
};

use super::{settings::Vars, wizard::GithubSource};

/// `SHOW server_version` over a fresh connection; the connection error as the driver words it.
pub fn server_version(url: &str) -> Result<String, String> {
    crate::install_crypto_provider();
    let connector = Connector::from_url(url).map_err(|e| e.to_string())?;
    let mut client = connector.connect().map_err(|e| e.to_string())?;
    let row = client
        .query_one("SHOW server_version", &[])
        .map_err(|e| crate::db::describe(&e))?;
    row.try_get(0).map_err(|e| crate::db::describe(&e))
}

/// What happened to the wizard's source.
#[derive(Debug, PartialEq, Eq)]
pub enum SourceOutcome {
    /// Added with GitHub's name for the App.
    Added { routing_key: String, name: String },
    /// A source with this App ID exists already (a re-run install): left as it is.
    Exists { routing_key: String },
}

/// Validates the App with GitHub and stores it, unless its routing key exists already.
pub fn add_github_source(vars: &Vars, source: &GithubSource) -> Result<SourceOutcome, Error> {
    let config = Config::from_vars(vars.clone())
        .map_err(|e| Error::Config(e.to_string()))?
        .config;
    crate::install_crypto_provider();
    let mut client = Connector::from_url(&config.database_url)?.connect()?;
    migrate::migrate(&mut client)?;
    let routing_key = sources::routing_key(&source.app_id);
    if sources::find(&mut client, &routing_key)?.is_some() {
        return Ok(SourceOutcome::Exists { routing_key });
    }
    let api = GitHubApi::new(&config.github_api_url);
    let now = jiff::Timestamp::now().as_second();
    let identity =
        validate_app(&api, &source.app_id, &source.private_key, now).map_err(|e| {
            let why = match e {
                ValidationError::GitHub(GitHubError::Rejected { message, .. }) => {
                    format!("GitHub API validation failed: {message}")
                }
                other => other.to_string(),
            };
            Error::Config(format!(
                "the GitHub App source {routing_key} was not added: {why} (check the App ID and the key file; \
                 the instance itself is installed: add the source later with `kici-admin source add github`)"
            ))
        })?;
    let secrets = SecretBox::new(config.secret_key.clone(), config.secret_key_old.clone());
    let new = sources::NewSource {
        name: &identity.name,
        app_id: &source.app_id,
        slug: Some(&identity.slug),
        private_key: &source.private_key,
        webhook_secret: source.webhook_secret.as_deref(),
    };
    sources::create(&mut client, &secrets, &new)?;
    Ok(SourceOutcome::Added {
        routing_key,
        name: identity.name,
    })
}
