//! All SQL of workflow secrets, environments, bindings and variables (docs/secrets.md,
//! "Storage"). Secrets are rows of `scoped_secrets` sealed with the `SecretBox` of `App` under
//! AAD `<org>:<scope>:<key>`; reads hand them out sealed, and `open` turns one into plaintext
//! only when a caller needs it (dispatch). Names are checked by `names` before they get here.

use postgres::{GenericClient, Row};

use super::names::EMPTY_SENTINEL_KEY;
use crate::{
    crypto::{self, CryptoError, SecretBox},
    db::{DbError, ISO},
};

/// One secret as stored: still sealed. Debug shows where it lives, never the sealed text.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub scope: String,
    pub key: String,
    pub sealed: String,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedSecret({}:{})", self.scope, self.key)
    }
}

/// A secret that could not be opened: which one and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError {
    pub org: String,
    pub scope: String,
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "secret {:?} in scope {:?} of org {:?} cannot be opened: {}",
            self.key, self.scope, self.org, self.reason
        )
    }
}

impl std::error::Error for OpenError {}

/// The plaintext of `secret`, an org's row: current key first, then `KICI_SECRET_KEY_OLD`.
pub fn open(sbox: &SecretBox, org: &str, secret: &SealedSecret) -> Result<String, OpenError> {
    let error = |reason: String| OpenError {
        org: org.to_owned(),
        scope: secret.scope.clone(),
        key: secret.key.clone(),
        reason,
    };
    let aad = crypto::aad(org, &secret.scope, &secret.key);
    let plain = sbox
        .open(&secret.sealed, &aad)
        .map_err(|e: CryptoError| error(e.to_string()))?;
    String::from_utf8(plain).map_err(|_| error("the value is not UTF-8".into()))
}

// --- Secrets ---

/// Seals `value` and upserts it at (org, scope, key).
pub fn put_secret(
    c: &mut impl GenericClient,
    sbox: &SecretBox,
    org: &str,
    scope: &str,
    key: &str,
    value: &str,
) -> Result<(), DbError> {
    let sealed = sbox.seal(value.as_bytes(), &crypto::aad(org, scope, key));
    c.execute(
        "INSERT INTO scoped_secrets (org_id, scope, key, encrypted_value) VALUES ($1, $2, $3, $4)
         ON CONFLICT (org_id, scope, key)
         DO UPDATE SET encrypted_value = EXCLUDED.encrypted_value, updated_at = now()",
        &[&org, &scope, &key, &sealed],
    )
    .map_err(DbError::query("storing a workflow secret"))?;
    Ok(())
}

/// Whether a row was deleted.
pub fn delete_secret(
    c: &mut impl GenericClient,
    org: &str,
    scope: &str,
    key: &str,
) -> Result<bool, DbError> {
    let n = c
        .execute(
            "DELETE FROM scoped_secrets WHERE org_id = $1 AND scope = $2 AND key = $3",
            &[&org, &scope, &key],
        )
        .map_err(DbError::query("deleting a workflow secret"))?;
    Ok(n > 0)
}

/// Makes an empty scope visible in `scopes` (the reference's `__empty__` marker row, sealed
/// like any value); nothing when the scope already has rows.
pub fn create_scope(
    c: &mut impl GenericClient,
    sbox: &SecretBox,
    org: &str,
    scope: &str,
) -> Result<(), DbError> {
    let sealed = sbox.seal(b"", &crypto::aad(org, scope, EMPTY_SENTINEL_KEY));
    c.execute(
        "INSERT INTO scoped_secrets (org_id, scope, key, encrypted_value)
         SELECT $1, $2, $3, $4
         WHERE NOT EXISTS (SELECT 1 FROM scoped_secrets WHERE org_id = $1 AND scope = $2)
         ON CONFLICT DO NOTHING",
        &[&org, &scope, &EMPTY_SENTINEL_KEY, &sealed],
    )
    .map_err(DbError::query("creating a secret scope"))?;
    Ok(())
}

/// Deletes a scope's secrets and the bindings whose pattern is exactly that scope; returns the
/// deleted keys (sorted) and how many bindings went.
pub fn delete_scope(
    c: &mut impl GenericClient,
    org: &str,
    scope: &str,
) -> Result<(Vec<String>, u64), DbError> {
    const CONTEXT: &str = "deleting a secret scope";
    let rows = c
        .query(
            "DELETE FROM scoped_secrets WHERE org_id = $1 AND scope = $2 RETURNING key",
            &[&org, &scope],
        )
        .map_err(DbError::query(CONTEXT))?;
    let mut keys: Vec<String> = DbError::first_column(&rows, CONTEXT)?;
    keys.retain(|k| k != EMPTY_SENTINEL_KEY);
    keys.sort();
    let bindings = c
        .execute(
            "DELETE FROM environment_bindings WHERE org_id = $1 AND scope_pattern = $2",
            &[&org, &scope],
        )
        .map_err(DbError::query(CONTEXT))?;
    Ok((keys, bindings))
}

/// Moves a scope's secrets to `new`, re-sealed under their new AAD, and rewrites the bindings
/// whose pattern is exactly `old`. `false` when neither secrets nor bindings had `old`. Run it
/// in a transaction: a key already present in `new` fails with a unique violation.
pub fn rename_scope(
    c: &mut impl GenericClient,
    sbox: &SecretBox,
    org: &str,
    old: &str,
    new: &str,
) -> Result<Result<bool, OpenError>, DbError> {
    const CONTEXT: &str = "renaming a secret scope";
    let rows = c
        .query(
            "SELECT scope, key, encrypted_value FROM scoped_secrets
             WHERE org_id = $1 AND scope = $2 ORDER BY key FOR UPDATE",
            &[&org, &old],
        )
        .map_err(DbError::query(CONTEXT))?;
    let secrets = sealed_rows(&rows, CONTEXT)?;
    for secret in &secrets {
        let plain = match open(sbox, org, secret) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let sealed = sbox.seal(plain.as_bytes(), &crypto::aad(org, new, &secret.key));
        c.execute(
            "UPDATE scoped_secrets SET scope = $3, encrypted_value = $4, updated_at = now()
             WHERE org_id = $1 AND scope = $2 AND key = $5",
            &[&org, &old, &new, &sealed, &secret.key],
        )
        .map_err(DbError::query(CONTEXT))?;
    }
    let bindings = c
        .execute(
            "UPDATE environment_bindings SET scope_pattern = $3
             WHERE org_id = $1 AND scope_pattern = $2",
            &[&org, &old, &new],
        )
        .map_err(DbError::query(CONTEXT))?;
    Ok(Ok(!secrets.is_empty() || bindings > 0))
}

/// Deletes every workflow secret of `org` (of every org when `None`); the orchestrator's own
/// source secrets (`__system__`) are never touched. Returns how many rows went.
pub fn purge(c: &mut impl GenericClient, org: Option<&str>) -> Result<u64, DbError> {
    c.execute(
        "DELETE FROM scoped_secrets WHERE org_id <> $1 AND ($2::text IS NULL OR org_id = $2)",
        &[&super::names::SYSTEM_ORG, &org],
    )
    .map_err(DbError::query("purging workflow secrets"))
}

/// The org's scopes, sorted (a scope exists while it has a row).
pub fn scopes(c: &mut impl GenericClient, org: &str) -> Result<Vec<String>, DbError> {
    let rows = c
        .query(
            "SELECT DISTINCT scope FROM scoped_secrets WHERE org_id = $1 ORDER BY scope",
            &[&org],
        )
        .map_err(DbError::query("listing secret scopes"))?;
    DbError::first_column(&rows, "listing secret scopes")
}

/// The key names of one scope, sorted.
pub fn keys(c: &mut impl GenericClient, org: &str, scope: &str) -> Result<Vec<String>, DbError> {
    let rows = c
        .query(
            "SELECT key FROM scoped_secrets WHERE org_id = $1 AND scope = $2 AND key <> $3
             ORDER BY key",
            &[&org, &scope, &EMPTY_SENTINEL_KEY],
        )
        .map_err(DbError::query("listing secret keys"))?;
    DbError::first_column(&rows, "listing secret keys")
}

fn sealed_rows(rows: &[Row], context: &'static str) -> Result<Vec<SealedSecret>, DbError> {
    rows.iter()
        .map(|r| {
            Ok(SealedSecret {
                scope: DbError::column(r, 0, context)?,
                key: DbError::column(r, 1, context)?,
                sealed: DbError::column(r, 2, context)?,
            })
        })
        .collect()
}

/// Every secret of one scope, sealed, by key.
pub fn sealed_in_scope(
    c: &mut impl GenericClient,
    org: &str,
    scope: &str,
) -> Result<Vec<SealedSecret>, DbError> {
    const CONTEXT: &str = "reading the secrets of a scope";
    let rows = c
        .query(
            "SELECT scope, key, encrypted_value FROM scoped_secrets
             WHERE org_id = $1 AND scope = $2 AND key <> $3 ORDER BY key",
            &[&org, &scope, &EMPTY_SENTINEL_KEY],
        )
        .map_err(DbError::query(CONTEXT))?;
    sealed_rows(&rows, CONTEXT)
}

/// Every secret of the org in every scope (org-wide included), sealed, by scope then key:
/// one query for a job's whole resolution.
pub fn sealed_of_org(c: &mut impl GenericClient, org: &str) -> Result<Vec<SealedSecret>, DbError> {
    const CONTEXT: &str = "reading the secrets of an org";
    let rows = c
        .query(
            "SELECT scope, key, encrypted_value FROM scoped_secrets
             WHERE org_id = $1 AND key <> $2 ORDER BY scope, key",
            &[&org, &EMPTY_SENTINEL_KEY],
        )
        .map_err(DbError::query(CONTEXT))?;
    sealed_rows(&rows, CONTEXT)
}

// --- Environments ---

/// An environment's name matching: one name, or every name its glob matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvKind {
    Fixed,
    Glob(String),
}

impl EnvKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            EnvKind::Fixed => "fixed",
            EnvKind::Glob(_) => "glob",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub scope_pattern: String,
    pub host_pattern: String,
    pub created_at: String,
}

/// A plain variable; its value is not secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub key: String,
    pub value: String,
    pub locked: bool,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub kind: EnvKind,
    /// Jobs of untrusted events get this environment's secrets and variables only when set.
    pub allow_untrusted: bool,
    pub enabled: bool,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// By scope pattern.
    pub bindings: Vec<Binding>,
    /// By key.
    pub variables: Vec<Variable>,
}

const ENV_COLUMNS: &str = "id::text, org_id, name, type, glob_pattern, allow_untrusted, enabled, \
     created_by, to_char(created_at AT TIME ZONE 'UTC', ISO), \
     to_char(updated_at AT TIME ZONE 'UTC', ISO)";

fn env_row(r: &Row) -> Result<Environment, DbError> {
    const CONTEXT: &str = "reading an environment";
    let kind: String = DbError::column(r, 3, CONTEXT)?;
    let glob: Option<String> = DbError::column(r, 4, CONTEXT)?;
    Ok(Environment {
        id: DbError::column(r, 0, CONTEXT)?,
        org_id: DbError::column(r, 1, CONTEXT)?,
        name: DbError::column(r, 2, CONTEXT)?,
        kind: match (kind.as_str(), glob) {
            ("glob", Some(pattern)) => EnvKind::Glob(pattern),
            _ => EnvKind::Fixed,
        },
        allow_untrusted: DbError::column(r, 5, CONTEXT)?,
        enabled: DbError::column(r, 6, CONTEXT)?,
        created_by: DbError::column(r, 7, CONTEXT)?,
        created_at: DbError::column(r, 8, CONTEXT)?,
        updated_at: DbError::column(r, 9, CONTEXT)?,
        bindings: Vec::new(),
        variables: Vec::new(),
    })
}

fn env_columns() -> String {
    ENV_COLUMNS.replace("ISO", ISO)
}

/// Every environment of the org, by name, with its bindings and variables (three queries).
pub fn environments(c: &mut impl GenericClient, org: &str) -> Result<Vec<Environment>, DbError> {
    let sql = format!(
        "SELECT {} FROM environments WHERE org_id = $1 ORDER BY name",
        env_columns()
    );
    let rows = c
        .query(&sql, &[&org])
        .map_err(DbError::query("listing environments"))?;
    let mut envs = rows.iter().map(env_row).collect::<Result<Vec<_>, _>>()?;
    attach_details(c, org, &mut envs)?;
    Ok(envs)
}

/// One environment by its exact name.
pub fn environment(
    c: &mut impl GenericClient,
    org: &str,
    name: &str,
) -> Result<Option<Environment>, DbError> {
    let sql = format!(
        "SELECT {} FROM environments WHERE org_id = $1 AND name = $2",
        env_columns()
    );
    let row = c
        .query_opt(&sql, &[&org, &name])
        .map_err(DbError::query("reading an environment"))?;
    let Some(row) = row else { return Ok(None) };
    let mut envs = vec![env_row(&row)?];
    attach_details(c, org, &mut envs)?;
    Ok(envs.pop())
}

fn attach_details(
    c: &mut impl GenericClient,
    org: &str,
    envs: &mut [Environment],
) -> Result<(), DbError> {
    if envs.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = envs.iter().map(|e| e.id.clone()).collect();
    const BINDINGS: &str = "reading environment bindings";
    let sql = format!(
        "SELECT environment_id::text, scope_pattern, host_pattern,
                to_char(created_at AT TIME ZONE 'UTC', {ISO})
         FROM environment_bindings WHERE org_id = $1 AND environment_id = ANY($2::text[]::uuid[])
         ORDER BY scope_pattern, host_pattern"
    );
    for r in c
        .query(&sql, &[&org, &ids])
        .map_err(DbError::query(BINDINGS))?
    {
        let env_id: String = DbError::column(&r, 0, BINDINGS)?;
        if let Some(env) = envs.iter_mut().find(|e| e.id == env_id) {
            env.bindings.push(Binding {
                scope_pattern: DbError::column(&r, 1, BINDINGS)?,
                host_pattern: DbError::column(&r, 2, BINDINGS)?,
                created_at: DbError::column(&r, 3, BINDINGS)?,
            });
        }
    }
    const VARIABLES: &str = "reading environment variables";
    let sql = format!(
        "SELECT environment_id::text, key, value, locked,
                to_char(updated_at AT TIME ZONE 'UTC', {ISO})
         FROM environment_variables WHERE org_id = $1 AND environment_id = ANY($2::text[]::uuid[])
         ORDER BY key"
    );
    for r in c
        .query(&sql, &[&org, &ids])
        .map_err(DbError::query(VARIABLES))?
    {
        let env_id: String = DbError::column(&r, 0, VARIABLES)?;
        if let Some(env) = envs.iter_mut().find(|e| e.id == env_id) {
            env.variables.push(Variable {
                key: DbError::column(&r, 1, VARIABLES)?,
                value: DbError::column(&r, 2, VARIABLES)?,
                locked: DbError::column(&r, 3, VARIABLES)?,
                updated_at: DbError::column(&r, 4, VARIABLES)?,
            });
        }
    }
    Ok(())
}

/// What `environment create` asks for; `None` keeps an existing environment's setting (and
/// takes the default for a new one).
#[derive(Debug, Clone, Default)]
pub struct EnvironmentSpec {
    pub name: String,
    pub kind: Option<EnvKind>,
    pub allow_untrusted: Option<bool>,
    pub enabled: Option<bool>,
}

/// Creates the environment or updates the given settings of an existing one of that name.
/// Returns its id and whether it was created.
pub fn upsert_environment(
    c: &mut impl GenericClient,
    org: &str,
    spec: &EnvironmentSpec,
    created_by: Option<&str>,
) -> Result<(String, bool), DbError> {
    const CONTEXT: &str = "storing an environment";
    let kind = spec.kind.as_ref().map(EnvKind::type_name);
    let glob = match &spec.kind {
        Some(EnvKind::Glob(p)) => Some(p.as_str()),
        _ => None,
    };
    let row = c
        .query_one(
            "INSERT INTO environments (org_id, name, type, glob_pattern, allow_untrusted, enabled, created_by)
             VALUES ($1, $2, COALESCE($3, 'fixed'), $4, COALESCE($5, false), COALESCE($6, true), $7)
             ON CONFLICT (org_id, name) DO UPDATE SET
                 type = COALESCE($3, environments.type),
                 glob_pattern = CASE WHEN $3::text IS NULL THEN environments.glob_pattern ELSE $4 END,
                 allow_untrusted = COALESCE($5, environments.allow_untrusted),
                 enabled = COALESCE($6, environments.enabled),
                 updated_at = now()
             RETURNING id::text, (xmax = 0)",
            &[&org, &spec.name, &kind, &glob, &spec.allow_untrusted, &spec.enabled, &created_by],
        )
        .map_err(DbError::query(CONTEXT))?;
    Ok((
        DbError::column(&row, 0, CONTEXT)?,
        DbError::column(&row, 1, CONTEXT)?,
    ))
}

fn env_id(c: &mut impl GenericClient, org: &str, name: &str) -> Result<Option<String>, DbError> {
    const CONTEXT: &str = "finding an environment";
    let row = c
        .query_opt(
            "SELECT id::text FROM environments WHERE org_id = $1 AND name = $2",
            &[&org, &name],
        )
        .map_err(DbError::query(CONTEXT))?;
    row.map(|r| DbError::column(&r, 0, CONTEXT)).transpose()
}

/// Runs `f` with the id of the org's environment `env`; `None` when it does not exist.
fn in_env<C: GenericClient, T>(
    c: &mut C,
    org: &str,
    env: &str,
    f: impl FnOnce(&mut C, &str) -> Result<T, DbError>,
) -> Result<Option<T>, DbError> {
    match env_id(c, org, env)? {
        Some(id) => f(c, &id).map(Some),
        None => Ok(None),
    }
}

/// `None` when the environment does not exist, else whether the binding is new.
pub fn bind(
    c: &mut impl GenericClient,
    org: &str,
    env: &str,
    scope_pattern: &str,
    host_pattern: &str,
) -> Result<Option<bool>, DbError> {
    in_env(c, org, env, |c, id| {
        c.execute(
            "INSERT INTO environment_bindings (org_id, environment_id, scope_pattern, host_pattern)
             VALUES ($1, $2::text::uuid, $3, $4) ON CONFLICT DO NOTHING",
            &[&org, &id, &scope_pattern, &host_pattern],
        )
        .map(|n| n > 0)
        .map_err(DbError::query("binding an environment to a scope"))
    })
}

/// `None` when the environment does not exist, else whether a binding was removed.
pub fn unbind(
    c: &mut impl GenericClient,
    org: &str,
    env: &str,
    scope_pattern: &str,
    host_pattern: &str,
) -> Result<Option<bool>, DbError> {
    in_env(c, org, env, |c, id| {
        c.execute(
            "DELETE FROM environment_bindings
             WHERE environment_id = $1::text::uuid AND scope_pattern = $2 AND host_pattern = $3",
            &[&id, &scope_pattern, &host_pattern],
        )
        .map(|n| n > 0)
        .map_err(DbError::query("unbinding an environment"))
    })
}

/// Deletes the environment with its bindings and variables; whether it existed.
pub fn delete_environment(
    c: &mut impl GenericClient,
    org: &str,
    name: &str,
) -> Result<bool, DbError> {
    let n = c
        .execute(
            "DELETE FROM environments WHERE org_id = $1 AND name = $2",
            &[&org, &name],
        )
        .map_err(DbError::query("deleting an environment"))?;
    Ok(n > 0)
}

/// `None` when the environment does not exist. `locked: None` keeps an existing variable's
/// lock (false for a new one).
pub fn set_variable(
    c: &mut impl GenericClient,
    org: &str,
    env: &str,
    key: &str,
    value: &str,
    locked: Option<bool>,
) -> Result<Option<()>, DbError> {
    in_env(c, org, env, |c, id| {
        c.execute(
            "INSERT INTO environment_variables (org_id, environment_id, key, value, locked)
             VALUES ($1, $2::text::uuid, $3, $4, COALESCE($5, false))
             ON CONFLICT (org_id, environment_id, key) DO UPDATE SET
                 value = EXCLUDED.value,
                 locked = COALESCE($5, environment_variables.locked),
                 updated_at = now()",
            &[&org, &id, &key, &value, &locked],
        )
        .map(|_| ())
        .map_err(DbError::query("storing an environment variable"))
    })
}

/// `None` when the environment does not exist, else whether the variable existed.
pub fn delete_variable(
    c: &mut impl GenericClient,
    org: &str,
    env: &str,
    key: &str,
) -> Result<Option<bool>, DbError> {
    in_env(c, org, env, |c, id| {
        c.execute(
            "DELETE FROM environment_variables WHERE environment_id = $1::text::uuid AND key = $2",
            &[&id, &key],
        )
        .map(|n| n > 0)
        .map_err(DbError::query("deleting an environment variable"))
    })
}
