//! Environment, binding and variable routes (docs/secrets.md, "Admin API"): the reference's
//! paths, bodies and row shapes (snake_case columns), so its `kici-admin environment …` and
//! `variable …` work against us, plus `unbind`. Protection rules (reviewers, branch filters,
//! wait timers) are not implemented, so a request setting one is refused rather than ignored.
//! Every route needs a token without a routing-key restriction.

use serde_json::{json, Value};

use super::{
    secrets::{checked, in_tx, param},
    ApiError, ApiResult, Body,
};
use crate::{
    app::SecretCtx,
    http::{Request, Response},
    rbac::{Caller, Permission},
    secrets::{
        names,
        store::{self, EnvKind, Environment, EnvironmentSpec},
    },
};

/// Fields of the reference's `POST /environments` that set protection rules we do not enforce.
/// An empty value (`null`, `[]`, `{}`, `""`, `0`) sets no rule and is accepted, so a client
/// that always sends every field still works; `holdExpirySeconds` only matters for holds, which
/// never happen here, and is ignored.
const PROTECTION_FIELDS: [&str; 7] = [
    "branchRestrictions",
    "triggerTypeFilters",
    "repoPatterns",
    "requiredReviewers",
    "waitTimerSeconds",
    "minimumTrust",
    "concurrencyLimit",
];

/// Whether a protection field's value would set a rule.
fn sets_rule(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Bool(true) => true,
    }
}

fn env_missing(org: &str, name: &str) -> ApiError {
    ApiError::Status(
        404,
        format!("environment not found (org={org}, name={name})"),
    )
}

/// `orgId` from the query (GET, DELETE, variables) checked.
fn query_org(req: &Request) -> Result<String, ApiError> {
    let org = param(req, "orgId").ok_or_else(|| ApiError::Status(400, "orgId required".into()))?;
    checked("orgId", &org, names::check_org)?;
    Ok(org)
}

fn guard(caller: &Caller, permission: Permission) -> Result<(), ApiError> {
    caller.require(permission)?;
    caller.require_unscoped()?;
    Ok(())
}

/// The environment row as the reference's routes return it.
pub fn env_json(env: &Environment) -> Value {
    let glob = match &env.kind {
        EnvKind::Glob(p) => Some(p.as_str()),
        EnvKind::Fixed => None,
    };
    json!({
        "id": env.id,
        "org_id": env.org_id,
        "name": env.name,
        "type": env.kind.type_name(),
        "glob_pattern": glob,
        "allow_untrusted": env.allow_untrusted,
        "enabled": env.enabled,
        "created_by": env.created_by,
        "created_at": env.created_at,
        "updated_at": env.updated_at,
    })
}

fn bindings_json(env: &Environment) -> Value {
    let b: Vec<_> = env
        .bindings
        .iter()
        .map(|b| json!({ "scope_pattern": b.scope_pattern, "host_pattern": b.host_pattern, "created_at": b.created_at }))
        .collect();
    Value::Array(b)
}

fn variables_json(env: &Environment) -> Value {
    let v: Vec<_> = env
        .variables
        .iter()
        .map(|v| json!({ "key": v.key, "value": v.value, "locked": v.locked, "updated_at": v.updated_at }))
        .collect();
    Value::Array(v)
}

/// `POST /environments`: create, or update the given settings of the one with that name.
pub fn create(ctx: &SecretCtx, caller: &Caller, req: &Request) -> ApiResult {
    guard(caller, Permission::SecretWrite)?;
    let mut body = Body::parse(&req.body)?;
    let org = body.string("orgId", true, names::MAX_ORG_CHARS);
    let name = body.string("name", true, names::MAX_ENV_NAME_CHARS);
    let kind = body.choice("type", &["fixed", "glob"]);
    let glob = body.string("globPattern", false, names::MAX_SCOPE_CHARS);
    let enabled = bool_field(&mut body, "enabled");
    let allow_untrusted = bool_field(&mut body, "allowUntrusted");
    for field in PROTECTION_FIELDS {
        if body.raw(field).is_some_and(sets_rule) {
            body.problem(
                field,
                "protection rules are not supported by this orchestrator; leave it out",
            );
        }
    }
    if let Some(m) = org.as_deref().and_then(|o| names::check_org(o).err()) {
        body.problem("orgId", m);
    }
    if let Some(m) = name.as_deref().and_then(|n| names::check_env_name(n).err()) {
        body.problem("name", m);
    }
    let kind = match (kind.as_deref(), glob) {
        (Some("glob"), Some(pattern)) => match names::check_glob("globPattern", &pattern) {
            Ok(()) => Some(EnvKind::Glob(pattern)),
            Err(m) => {
                body.problem("globPattern", m);
                None
            }
        },
        (Some("glob"), None) => {
            body.problem("globPattern", "is required when type is \"glob\"");
            None
        }
        (None, Some(pattern)) => {
            body.problem(
                "globPattern",
                format!("{pattern:?} given without \"type\": \"glob\""),
            );
            None
        }
        (Some("fixed"), Some(_)) => {
            body.problem("globPattern", "only a \"glob\" environment has one");
            None
        }
        (Some(_), _) => Some(EnvKind::Fixed),
        (None, None) => None,
    };
    body.finish()?;
    let org = org.unwrap_or_default();
    let spec = EnvironmentSpec {
        name: name.unwrap_or_default(),
        kind,
        allow_untrusted,
        enabled,
    };
    let (id, created) = ctx
        .pool
        .with_retry(|c| store::upsert_environment(c, &org, &spec, Some(&caller.token_id)))?;
    log::info!(
        "environment {:?} of org {org:?} {} by token {}",
        spec.name,
        if created { "created" } else { "updated" },
        caller.token_id
    );
    let status = if created { 201 } else { 200 };
    Ok(Response::json(
        status,
        &json!({ "envId": id, "created": created }),
    ))
}

fn bool_field(body: &mut Body, field: &str) -> Option<bool> {
    match body.raw(field) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            body.problem(field, "must be true or false");
            None
        }
    }
}

/// `{orgId, scopePattern, hostPattern?}` of bind and unbind, checked.
fn binding_body(req: &Request) -> Result<(String, String, String), ApiError> {
    let mut body = Body::parse(&req.body)?;
    let org = body.string("orgId", true, names::MAX_ORG_CHARS);
    let pattern = body.string("scopePattern", true, names::MAX_SCOPE_CHARS);
    let host = body.string("hostPattern", false, names::MAX_SCOPE_CHARS);
    if let Some(m) = org.as_deref().and_then(|o| names::check_org(o).err()) {
        body.problem("orgId", m);
    }
    if let Some(m) = pattern
        .as_deref()
        .and_then(|p| names::check_scope_pattern(p).err())
    {
        body.problem("scopePattern", m);
    }
    // Host-specific bindings (per agent host) are not resolved here, so none may be stored.
    if host.as_deref().is_some_and(|h| h != "**") {
        body.problem(
            "hostPattern",
            "only \"**\" (every host) is supported; leave it out",
        );
    }
    body.finish()?;
    Ok((
        org.unwrap_or_default(),
        pattern.unwrap_or_default(),
        "**".to_owned(),
    ))
}

/// `POST /environments/:name/bind`.
pub fn bind(ctx: &SecretCtx, caller: &Caller, req: &Request, name: &str) -> ApiResult {
    guard(caller, Permission::SecretWrite)?;
    let (org, pattern, host) = binding_body(req)?;
    let created = ctx
        .pool
        .with_retry(|c| store::bind(c, &org, name, &pattern, &host))?
        .ok_or_else(|| env_missing(&org, name))?;
    let status = if created { 201 } else { 200 };
    Ok(Response::json(status, &json!({ "created": created })))
}

/// `POST /environments/:name/unbind` (ours): the same body as bind.
pub fn unbind(ctx: &SecretCtx, caller: &Caller, req: &Request, name: &str) -> ApiResult {
    guard(caller, Permission::SecretWrite)?;
    let (org, pattern, host) = binding_body(req)?;
    let deleted = ctx
        .pool
        .with_retry(|c| store::unbind(c, &org, name, &pattern, &host))?
        .ok_or_else(|| env_missing(&org, name))?;
    if !deleted {
        return Err(ApiError::Status(
            404,
            format!("binding not found (org={org}, name={name}, scopePattern={pattern})"),
        ));
    }
    Ok(Response::json(200, &json!({ "deleted": true })))
}

/// `GET /environments?orgId=[&includeSecrets=true]`: with `includeSecrets`, each row also lists
/// `secret_keys`, the key names of the scopes its bindings name exactly (never values).
pub fn list(ctx: &SecretCtx, caller: &Caller, req: &Request) -> ApiResult {
    guard(caller, Permission::SecretRead)?;
    let org = query_org(req)?;
    let with_keys = param(req, "includeSecrets").as_deref() == Some("true");
    let rows = ctx.pool.with_retry(|c| {
        let envs = store::environments(c, &org)?;
        let mut rows = Vec::with_capacity(envs.len());
        for env in &envs {
            let mut row = env_json(env);
            row["bindings"] = bindings_json(env);
            if with_keys {
                let mut keys = Vec::new();
                for b in &env.bindings {
                    keys.extend(store::keys(c, &org, &b.scope_pattern)?);
                }
                keys.sort();
                keys.dedup();
                row["secret_keys"] = json!(keys);
            }
            rows.push(row);
        }
        Ok(rows)
    })?;
    Ok(Response::json(200, &json!({ "environments": rows })))
}

fn load(ctx: &SecretCtx, org: &str, name: &str) -> Result<Environment, ApiError> {
    ctx.pool
        .with_retry(|c| store::environment(c, org, name))?
        .ok_or_else(|| env_missing(org, name))
}

/// `GET /environments/:name?orgId=`.
pub fn show(ctx: &SecretCtx, caller: &Caller, req: &Request, name: &str) -> ApiResult {
    guard(caller, Permission::SecretRead)?;
    let org = query_org(req)?;
    let env = load(ctx, &org, name)?;
    Ok(Response::json(
        200,
        &json!({
            "environment": env_json(&env),
            "variables": variables_json(&env),
            "bindings": bindings_json(&env),
        }),
    ))
}

/// `DELETE /environments/:name?orgId=`: with its bindings and variables.
pub fn delete(ctx: &SecretCtx, caller: &Caller, req: &Request, name: &str) -> ApiResult {
    guard(caller, Permission::SecretWrite)?;
    let org = query_org(req)?;
    if !ctx
        .pool
        .with_retry(|c| store::delete_environment(c, &org, name))?
    {
        return Err(env_missing(&org, name));
    }
    log::info!(
        "environment {name:?} of org {org:?} deleted by token {}",
        caller.token_id
    );
    Ok(Response::json(200, &json!({ "deleted": true })))
}

/// `GET /environments/:name/variables?orgId=`.
pub fn variables(ctx: &SecretCtx, caller: &Caller, req: &Request, name: &str) -> ApiResult {
    guard(caller, Permission::SecretRead)?;
    let org = query_org(req)?;
    let env = load(ctx, &org, name)?;
    Ok(Response::json(
        200,
        &json!({ "variables": variables_json(&env) }),
    ))
}

/// `PUT /environments/:name/variables/:key?orgId=` with `{value, locked?}`.
pub fn set_variable(
    ctx: &SecretCtx,
    caller: &Caller,
    req: &Request,
    name: &str,
    key: &str,
) -> ApiResult {
    guard(caller, Permission::SecretWrite)?;
    let org = query_org(req)?;
    checked("key", key, names::check_variable_key)?;
    let mut body = Body::parse(&req.body)?;
    let value = match body.raw("value") {
        Some(Value::String(v)) => Some(v.clone()),
        None | Some(Value::Null) => {
            body.problem("value", "is required");
            None
        }
        Some(_) => {
            body.problem("value", "must be a string");
            None
        }
    };
    if let Some(m) = value
        .as_deref()
        .and_then(|v| names::check_value("value", v).err())
    {
        body.problem("value", m);
    }
    let locked = bool_field(&mut body, "locked");
    body.finish()?;
    let value = value.unwrap_or_default();
    in_tx(ctx, |tx| {
        store::set_variable(tx, &org, name, key, &value, locked)
    })?
    .ok_or_else(|| env_missing(&org, name))?;
    Ok(Response::json(200, &json!({ "set": true })))
}

/// `DELETE /environments/:name/variables/:key?orgId=`.
pub fn delete_variable(
    ctx: &SecretCtx,
    caller: &Caller,
    req: &Request,
    name: &str,
    key: &str,
) -> ApiResult {
    guard(caller, Permission::SecretDelete)?;
    let org = query_org(req)?;
    let deleted = ctx
        .pool
        .with_retry(|c| store::delete_variable(c, &org, name, key))?
        .ok_or_else(|| env_missing(&org, name))?;
    if !deleted {
        return Err(invalid_missing_variable(&org, name, key));
    }
    Ok(Response::json(200, &json!({ "deleted": true })))
}

fn invalid_missing_variable(org: &str, name: &str, key: &str) -> ApiError {
    ApiError::Status(
        404,
        format!("variable not found (org={org}, environment={name}, key={key})"),
    )
}
