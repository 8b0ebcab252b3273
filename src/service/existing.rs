//! Whether the database an install is pointed at already holds an orchestrator instance
//! (docs/operations.md, "Instances"), and whether a secret key and admin token are that
//! instance's. A new `KICI_SECRET_KEY` on such a database leaves every sealed secret unreadable,
//! and a new `KICI_BOOTSTRAP_ADMIN_TOKEN` replaces the other instance's bootstrap token on first
//! start; so `install` (and its wizard) require the instance's key, verified by decrypting one
//! stored value, and its bootstrap token, verified against the stored hash, unless
//! `--force-new-instance` says the operator means to take the database over.

use crate::{
    crypto::{self, SecretBox, SecretKey},
    db::Connector,
};

/// What an existing instance left in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub migrations: i64,
    pub active_admin_tokens: i64,
    pub sealed_secrets: i64,
    /// The bootstrap token's hash, when a `bootstrap` token exists.
    pub bootstrap_hash: Option<String>,
}

impl Existing {
    pub fn describe(&self) -> String {
        format!(
            "{} migrations applied, {} active admin tokens, {} sealed secrets",
            self.migrations, self.active_admin_tokens, self.sealed_secrets
        )
    }

    /// What taking the database over with a new key and token breaks.
    pub fn what_breaks(&self) -> String {
        let mut parts = Vec::new();
        if self.sealed_secrets > 0 {
            parts.push(format!(
                "its {} sealed secrets (GitHub App keys, webhook secrets) can no longer be \
                 decrypted, so those sources stop working",
                self.sealed_secrets
            ));
        }
        if self.bootstrap_hash.is_some() {
            parts.push(
                "its bootstrap admin token is replaced by this instance's on first start"
                    .to_owned(),
            );
        }
        if parts.is_empty() {
            parts.push("both instances share runs, sources and tokens".to_owned());
        }
        parts.join("; ")
    }

    /// Whether `token` is the bootstrap token (true when there is none to protect).
    pub fn token_matches(&self, token: &str) -> bool {
        match &self.bootstrap_hash {
            Some(hash) => crypto::ct_eq(hash.as_bytes(), crypto::hash_token(token).as_bytes()),
            None => true,
        }
    }
}

/// The instance in the database at `url`, `None` when it holds none (no `schema_migrations`).
pub fn inspect(url: &str) -> Result<Option<Existing>, String> {
    crate::install_crypto_provider();
    let mut client = Connector::from_url(url)
        .map_err(|e| e.to_string())?
        .connect()
        .map_err(|e| e.to_string())?;
    let q = |client: &mut postgres::Client, sql: &str| -> Result<i64, String> {
        client
            .query_one(sql, &[])
            .and_then(|r| r.try_get::<_, i64>(0))
            .map_err(|e| crate::db::describe(&e))
    };
    let has = |client: &mut postgres::Client, table: &str| -> Result<bool, String> {
        client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .and_then(|r| r.try_get::<_, bool>(0))
            .map_err(|e| crate::db::describe(&e))
    };
    if !has(&mut client, "schema_migrations")? {
        return Ok(None);
    }
    let migrations = q(&mut client, "SELECT count(*) FROM schema_migrations")?;
    let (active_admin_tokens, bootstrap_hash) = if has(&mut client, "admin_tokens")? {
        let n = q(
            &mut client,
            "SELECT count(*) FROM admin_tokens WHERE NOT revoked",
        )?;
        let hash = client
            .query_opt(
                "SELECT token_hash FROM admin_tokens WHERE label = 'bootstrap' \
                 ORDER BY created_at, id LIMIT 1",
                &[],
            )
            .map_err(|e| crate::db::describe(&e))?
            .and_then(|r| r.try_get::<_, String>(0).ok());
        (n, hash)
    } else {
        (0, None)
    };
    let sealed_secrets = if has(&mut client, "scoped_secrets")? {
        q(&mut client, "SELECT count(*) FROM scoped_secrets")?
    } else {
        0
    };
    Ok(Some(Existing {
        migrations,
        active_admin_tokens,
        sealed_secrets,
        bootstrap_hash,
    }))
}

/// Whether `key_hex` opens a stored secret of the database at `url` (true when none is stored:
/// nothing can break then).
pub fn key_opens(url: &str, key_hex: &str) -> Result<bool, String> {
    let key = SecretKey::parse(key_hex).map_err(|e| e.to_string())?;
    crate::install_crypto_provider();
    let mut client = Connector::from_url(url)
        .map_err(|e| e.to_string())?
        .connect()
        .map_err(|e| e.to_string())?;
    let row = client
        .query_opt(
            "SELECT org_id, scope, key, encrypted_value FROM scoped_secrets \
             ORDER BY updated_at DESC LIMIT 1",
            &[],
        )
        .map_err(|e| crate::db::describe(&e))?;
    let Some(row) = row else { return Ok(true) };
    let get = |i: usize| row.try_get::<_, String>(i).map_err(|e| e.to_string());
    let aad = crypto::aad(&get(0)?, &get(1)?, &get(2)?);
    Ok(SecretBox::new(key, None).open(&get(3)?, &aad).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_breaks_names_the_secrets_and_the_token() {
        let e = Existing {
            migrations: 9,
            active_admin_tokens: 2,
            sealed_secrets: 3,
            bootstrap_hash: Some(crypto::hash_token("the-bootstrap-token")),
        };
        assert!(e.what_breaks().contains("3 sealed secrets"));
        assert!(e
            .what_breaks()
            .contains("bootstrap admin token is replaced"));
        assert!(e.token_matches("the-bootstrap-token"));
        assert!(!e.token_matches("another-token-entirely"));
        let bare = Existing {
            sealed_secrets: 0,
            bootstrap_hash: None,
            ..e
        };
        assert!(bare.token_matches("anything"));
        assert!(bare.what_breaks().contains("share"));
        assert_eq!(
            bare.describe(),
            "9 migrations applied, 2 active admin tokens, 0 sealed secrets"
        );
    }
}
