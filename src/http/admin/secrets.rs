//! Workflow secret routes, key rotation and the audit log (docs/secrets.md, "Admin API"): the
//! reference's paths and bodies, so its `kici-admin secret …` and `rotate-key` work against us.
//! No route ever returns a value; lists give key names. Every secret route needs a token
//! without a routing-key restriction (workflow secrets belong to orgs, not to one source); a
//! scoped token may read the audit log of its own routing key only.

use postgres::Transaction;
use serde_json::{json, Value};

use super::{ApiError, ApiResult, Body};
use crate::{
    app::SecretCtx,
    db::DbError,
    http::{Request, Response},
    rbac::{Caller, Permission},
    secrets::{
        audit::{self, Actor, AuditEntry, AuditQuery, Outcome},
        names,
        rotate::{self, RotateError},
        store,
    },
};

/// A 400 `Validation error` for one field.
pub(super) fn invalid(field: &str, message: String) -> ApiError {
    ApiError::Validation(vec![(field.to_owned(), message)])
}

pub(super) fn checked(
    field: &str,
    value: &str,
    check: fn(&str) -> Result<(), String>,
) -> Result<(), ApiError> {
    check(value).map_err(|m| invalid(field, m))
}

/// The first value of query parameter `name`, when given and not empty.
pub(super) fn param(req: &Request, name: &str) -> Option<String> {
    req.query_pairs()
        .into_iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v)
}

/// Runs `f` in one transaction (a change and its audit row commit together).
pub(super) fn in_tx<T>(
    ctx: &SecretCtx,
    mut f: impl FnMut(&mut Transaction) -> Result<T, DbError>,
) -> Result<T, DbError> {
    ctx.pool.with_retry(|c| {
        let mut tx = c
            .transaction()
            .map_err(DbError::query("starting a transaction"))?;
        let value = f(&mut tx)?;
        tx.commit()
            .map_err(DbError::query("committing a transaction"))?;
        Ok(value)
    })
}

/// An audit row written by an admin token.
fn by_token<'a>(
    caller: &'a Caller,
    action: &'a str,
    org: Option<&'a str>,
    context: &'a str,
    keys: &'a [String],
    metadata: Value,
) -> AuditEntry<'a> {
    AuditEntry {
        action,
        actor: Actor::Token(&caller.token_id),
        org,
        context,
        routing_key: None,
        keys,
        outcome: Outcome::Allowed,
        run_id: None,
        job_id: None,
        metadata,
    }
}

pub fn list_scopes(ctx: &SecretCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::SecretRead)?;
    caller.require_unscoped()?;
    let org = param(req, "orgId").ok_or_else(|| ApiError::Status(400, "orgId required".into()))?;
    checked("orgId", &org, names::check_org)?;
    let scopes = ctx.pool.with_retry(|c| store::scopes(c, &org))?;
    Ok(Response::json(200, &json!({ "scopes": scopes })))
}

pub fn list_keys(ctx: &SecretCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::SecretRead)?;
    caller.require_unscoped()?;
    let (Some(org), Some(scope)) = (param(req, "orgId"), param(req, "scope")) else {
        return Err(ApiError::Status(400, "orgId and scope required".into()));
    };
    checked("orgId", &org, names::check_org)?;
    checked("scope", &scope, names::check_scope)?;
    let keys = ctx.pool.with_retry(|c| store::keys(c, &org, &scope))?;
    Ok(Response::json(200, &json!({ "keys": keys })))
}

pub fn create_scope(ctx: &SecretCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::SecretWrite)?;
    caller.require_unscoped()?;
    let mut body = Body::parse(&req.body)?;
    let org = body.string("orgId", true, names::MAX_ORG_CHARS);
    let scope = body.string("scope", true, names::MAX_SCOPE_CHARS);
    body.finish()?;
    let (org, scope) = (org.unwrap_or_default(), scope.unwrap_or_default());
    checked("orgId", &org, names::check_org)?;
    checked("scope", &scope, names::check_scope)?;
    ctx.pool
        .with_retry(|c| store::create_scope(c, ctx.secrets, &org, &scope))?;
    Ok(Response::json(200, &json!({ "created": true })))
}

pub fn rename_scope(ctx: &SecretCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::SecretWrite)?;
    caller.require_unscoped()?;
    let mut body = Body::parse(&req.body)?;
    let org = body.string("orgId", true, names::MAX_ORG_CHARS);
    let old = body.string("oldScope", true, names::MAX_SCOPE_CHARS);
    let new = body.string("newScope", true, names::MAX_SCOPE_CHARS);
    body.finish()?;
    let (org, old, new) = (
        org.unwrap_or_default(),
        old.unwrap_or_default(),
        new.unwrap_or_default(),
    );
    checked("orgId", &org, names::check_org)?;
    checked("oldScope", &old, names::check_scope)?;
    checked("newScope", &new, names::check_scope)?;
    let renamed = in_tx(ctx, |tx| {
        let outcome = store::rename_scope(tx, ctx.secrets, &org, &old, &new)?;
        if let Ok(true) = outcome {
            let entry = by_token(
                caller,
                "renameScope",
                Some(&org),
                &old,
                &[],
                json!({ "orgId": org, "newScope": new }),
            );
            audit::record(tx, &entry)?;
        }
        Ok(outcome)
    })?;
    match renamed {
        Ok(true) => Ok(Response::json(200, &json!({ "renamed": true }))),
        Ok(false) => Err(ApiError::Status(
            404,
            format!("Secret scope '{old}' not found"),
        )),
        Err(e) => Err(ApiError::Status(409, e.to_string())),
    }
}

pub fn delete_scope(ctx: &SecretCtx, caller: &Caller, org: &str, scope: &str) -> ApiResult {
    caller.require(Permission::SecretDelete)?;
    caller.require_unscoped()?;
    checked("orgId", org, names::check_org)?;
    checked("scope", scope, names::check_scope)?;
    in_tx(ctx, |tx| {
        let (keys, bindings) = store::delete_scope(tx, org, scope)?;
        let meta = json!({ "orgId": org, "bindingsDeleted": bindings });
        audit::record(
            tx,
            &by_token(caller, "deleteScope", Some(org), scope, &keys, meta),
        )
    })?;
    log::info!(
        "secret scope {scope:?} of org {org:?} deleted by token {}",
        caller.token_id
    );
    Ok(Response::json(200, &json!({ "deleted": true })))
}

/// `PUT /secrets/:orgId/:scope/:key` with `{"value": "…"}`.
pub fn set(ctx: &SecretCtx, caller: &Caller, req: &Request, path: [&str; 3]) -> ApiResult {
    caller.require(Permission::SecretWrite)?;
    caller.require_unscoped()?;
    let [org, scope, key] = path;
    checked("orgId", org, names::check_org)?;
    checked("scope", scope, names::check_scope)?;
    checked("key", key, names::check_key)?;
    let body = Body::parse(&req.body)?;
    // An empty value is legal (the reference's CLI warns about it); anything but a string is not.
    let value = match body.raw("value") {
        Some(Value::String(v)) => v.clone(),
        None | Some(Value::Null) => return Err(invalid("value", "is required".into())),
        Some(_) => return Err(invalid("value", "must be a string".into())),
    };
    names::check_value("value", &value).map_err(|m| invalid("value", m))?;
    let keys = [key.to_owned()];
    in_tx(ctx, |tx| {
        store::put_secret(tx, ctx.secrets, org, scope, key, &value)?;
        let meta = json!({ "orgId": org });
        audit::record(
            tx,
            &by_token(caller, audit::SET_SECRET, Some(org), scope, &keys, meta),
        )
    })?;
    log::info!(
        "secret {key:?} in scope {scope:?} of org {org:?} set by token {}",
        caller.token_id
    );
    Ok(Response::json(200, &json!({ "set": true })))
}

/// `DELETE /secrets/:orgId/:scope/:key`: `{"deleted": true}` even when it did not exist (as the
/// reference answers), with `existed` saying which.
pub fn delete(ctx: &SecretCtx, caller: &Caller, path: [&str; 3]) -> ApiResult {
    caller.require(Permission::SecretDelete)?;
    caller.require_unscoped()?;
    let [org, scope, key] = path;
    checked("orgId", org, names::check_org)?;
    checked("scope", scope, names::check_scope)?;
    let keys = [key.to_owned()];
    let existed = in_tx(ctx, |tx| {
        let existed = store::delete_secret(tx, org, scope, key)?;
        let meta = json!({ "orgId": org, "existed": existed });
        let entry = by_token(caller, audit::DELETE_SECRET, Some(org), scope, &keys, meta);
        audit::record(tx, &entry)?;
        Ok(existed)
    })?;
    log::info!(
        "secret {key:?} in scope {scope:?} of org {org:?} deleted by token {}",
        caller.token_id
    );
    Ok(Response::json(
        200,
        &json!({ "deleted": true, "existed": existed }),
    ))
}

/// `POST /secrets/purge` `{"orgId"?}`: owners only (the reference lets any token purge), and
/// never the orchestrator's own source secrets.
pub fn purge(ctx: &SecretCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::SecretPurge)?;
    caller.require_unscoped()?;
    let mut body = Body::parse(&req.body)?;
    let org = body.string("orgId", false, names::MAX_ORG_CHARS);
    body.finish()?;
    if let Some(org) = &org {
        checked("orgId", org, names::check_org)?;
    }
    let context = org.clone().unwrap_or_else(|| "*".to_owned());
    let deleted = in_tx(ctx, |tx| {
        let n = store::purge(tx, org.as_deref())?;
        let meta = json!({ "orgId": org, "deleted": n });
        audit::record(
            tx,
            &by_token(caller, "purge", org.as_deref(), &context, &[], meta),
        )?;
        Ok(n)
    })?;
    log::warn!(
        "{deleted} workflow secrets of {} purged by token {}",
        org.as_deref().unwrap_or("every org"),
        caller.token_id
    );
    Ok(Response::json(200, &json!({ "deleted": deleted })))
}

/// `POST /rotate-key`: every sealed value re-sealed under the current key, or nothing changed.
pub fn rotate_key(ctx: &SecretCtx, caller: &Caller) -> ApiResult {
    caller.require(Permission::KeyRotate)?;
    caller.require_unscoped()?;
    let mut conn = ctx.pool.get()?;
    let rotated = rotate::rotate(&mut conn, ctx.secrets).map_err(|e| match e {
        RotateError::Db(e) => ApiError::Db(e),
        undecryptable => {
            log::error!("{undecryptable}");
            ApiError::Status(409, undecryptable.to_string())
        }
    })?;
    let meta = json!({
        "reEncrypted": rotated.resealed,
        "reEncryptedWithOldKey": rotated.with_old_key,
        "keyVersion": rotated.key_version,
    });
    audit::record(
        &mut *conn,
        &by_token(caller, audit::ROTATE_KEY, None, "*", &[], meta),
    )?;
    log::info!(
        "secret key rotation by token {}: {} values re-sealed ({} opened with KICI_SECRET_KEY_OLD), key version {}",
        caller.token_id,
        rotated.resealed,
        rotated.with_old_key,
        rotated.key_version
    );
    Ok(Response::json(
        200,
        &json!({
            "reEncrypted": rotated.resealed,
            "reEncryptedConfigs": 0,
            "skippedConfigs": 0,
            "reEncryptedWithOldKey": rotated.with_old_key,
            "keyVersion": rotated.key_version,
        }),
    ))
}

/// A time filter: RFC 3339 (`2026-12-01T10:00:00Z`) or a date (`2026-12-01`, midnight UTC).
fn timestamp(field: &str, text: &str) -> Result<String, ApiError> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    full.parse::<jiff::Timestamp>()
        .map(|t| t.to_string())
        .map_err(|_| {
            invalid(
                field,
                format!("{text:?} is not a timestamp: use RFC 3339 (2026-12-01T10:00:00Z) or a date (2026-12-01)"),
            )
        })
}

fn count(field: &str, text: &str, max: i64) -> Result<i64, ApiError> {
    match text.parse::<i64>() {
        Ok(n) if (0..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            field,
            format!("{text:?} is not a whole number from 0 to {max}"),
        )),
    }
}

/// `GET /audit?orgId=&action=&contextName=&routingKey=&since=&until=&limit=&offset=` (`from` and
/// `to` are the reference's names for `since` and `until`). Newest first.
pub fn read_audit(ctx: &SecretCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::AuditRead)?;
    let mut q = AuditQuery {
        org: param(req, "orgId"),
        action: param(req, "action"),
        context: param(req, "contextName"),
        routing_key: param(req, "routingKey"),
        limit: audit::DEFAULT_LIMIT,
        ..Default::default()
    };
    if let Some(t) = param(req, "since").or_else(|| param(req, "from")) {
        q.since = Some(timestamp("since", &t)?);
    }
    if let Some(t) = param(req, "until").or_else(|| param(req, "to")) {
        q.until = Some(timestamp("until", &t)?);
    }
    if let Some(n) = param(req, "limit") {
        q.limit = count("limit", &n, audit::MAX_LIMIT)?.max(1);
    }
    if let Some(n) = param(req, "offset") {
        q.offset = count("offset", &n, i64::from(i32::MAX))?;
    }
    if let Some(own) = &caller.routing_key {
        q.routing_key = Some(own.clone());
    }
    let entries = ctx.pool.with_retry(|c| audit::query(c, &q))?;
    Ok(Response::json(200, &json!({ "entries": entries })))
}
