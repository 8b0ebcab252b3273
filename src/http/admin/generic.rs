//! Generic webhook sources (docs/operations.md, "Admin API"). The verification secret is split
//! out of `verificationConfig` and sealed at rest; it comes back only with
//! `?includeSecrets=true` for a caller holding `secret.read`.

use serde_json::{json, Map, Value};

use super::{not_found, ApiError, ApiResult, Body};
use crate::{
    app::SourceCtx,
    db::generic::{self, SecretChange, Val},
    http::{Request, Response},
    rbac::{Caller, Permission},
    sources::registry::Kind,
};

const METHODS: &[&str] = &["hmac_sha256", "bearer_token", "ip_allowlist", "none"];

/// The config field holding the secret for a method, if it has one.
fn secret_field(method: &str) -> Option<&'static str> {
    match method {
        "hmac_sha256" => Some("secret"),
        "bearer_token" => Some("token"),
        _ => None,
    }
}

/// Splits a `verificationConfig` into what is stored in the row and the secret (if any).
/// Only known keys are kept, so a secret under an unexpected key never lands in plaintext.
fn split_config(
    body: &mut Body,
    method: &str,
    config: &Map<String, Value>,
) -> (Value, Option<String>) {
    let mut public = Map::new();
    if let Some(h) = config.get("headerName") {
        match h.as_str() {
            Some(s) if !s.is_empty() => {
                public.insert("headerName".into(), s.to_ascii_lowercase().into());
            }
            _ => body.problem(
                "verificationConfig.headerName",
                "must be a non-empty string",
            ),
        }
    }
    let mut secret = None;
    match method {
        "ip_allowlist" => {
            let list = config.get("allowlist").or_else(|| config.get("allowedIps"));
            match list.and_then(Value::as_array) {
                Some(ips)
                    if !ips.is_empty()
                        && ips.iter().all(|ip| {
                            ip.as_str()
                                .is_some_and(|s| s.trim().parse::<std::net::IpAddr>().is_ok())
                        }) =>
                {
                    let ips: Vec<Value> = ips
                        .iter()
                        .filter_map(|v| v.as_str().map(|s| s.trim().into()))
                        .collect();
                    public.insert("allowlist".into(), Value::Array(ips));
                }
                _ => body.problem(
                    "verificationConfig.allowlist",
                    "must be a non-empty array of IP addresses",
                ),
            }
        }
        m => {
            if let Some(field) = secret_field(m) {
                // The legacy `api_key` shape used `key`; accept it for bearer tokens.
                let value = config.get(field).or_else(|| {
                    if m == "bearer_token" {
                        config.get("key")
                    } else {
                        None
                    }
                });
                match value {
                    Some(Value::String(s)) if !s.is_empty() => secret = Some(s.clone()),
                    Some(_) => body.problem(
                        &format!("verificationConfig.{field}"),
                        "must be a non-empty string",
                    ),
                    None => {}
                }
            }
        }
    }
    (Value::Object(public), secret)
}

/// The optional columns shared by create and update, from camelCase body fields.
fn columns(body: &mut Body) -> Vec<(&'static str, Val)> {
    let mut cols = Vec::new();
    for (field, col, max) in [
        ("eventTypeHeader", "event_type_header", 255),
        ("eventTypePath", "event_type_path", 500),
        ("idempotencyKeyHeader", "idempotency_key_header", 255),
        ("idempotencyKeyPath", "idempotency_key_path", 500),
    ] {
        if body.is_null(field) {
            cols.push((col, Val::Text(None)));
        } else if let Some(v) = body.string(field, false, max) {
            cols.push((col, Val::Text(Some(v))));
        }
    }
    for (field, col) in [
        ("dedupWindowSeconds", "dedup_window_seconds"),
        ("maxPayloadBytes", "max_payload_bytes"),
        ("rateLimitRpm", "rate_limit_rpm"),
    ] {
        if let Some(n) = body.positive_int(field) {
            cols.push((col, Val::Int(n)));
        }
    }
    if body.is_null("allowedEvents") {
        cols.push(("allowed_events", Val::Json(None)));
    } else if let Some(list) = body.string_list("allowedEvents") {
        cols.push(("allowed_events", Val::Json(Some(json!(list)))));
    }
    if let Some(list) = body.string_list("stripHeaders") {
        let lower: Vec<String> = list.iter().map(|h| h.to_ascii_lowercase()).collect();
        cols.push(("strip_headers", Val::Json(Some(json!(lower)))));
    }
    if let Some(p) = body.choice("providerType", &["generic", "local"]) {
        cols.push(("provider_type", Val::Text(Some(p))));
    }
    if body.is_null("gitConfig") {
        cols.push(("git_config", Val::Json(None)));
    } else if let Some(g) = body.object("gitConfig") {
        for field in ["localPath", "path"] {
            if let Some(v) = g.get(field) {
                if let Err(why) = check_local_path(v) {
                    body.problem(&format!("gitConfig.{field}"), why);
                }
            }
        }
        cols.push(("git_config", Val::Json(Some(Value::Object(g)))));
    }
    cols
}

/// A local source's folder: an absolute path (a relative one would depend on the daemon's
/// working directory), without control characters, of a sane length.
fn check_local_path(v: &Value) -> Result<(), String> {
    let Some(p) = v.as_str() else {
        return Err("must be a string (an absolute path such as /srv/repos)".into());
    };
    if p.len() > 4096 || p.chars().any(char::is_control) {
        return Err(
            "must be an absolute path of at most 4096 bytes without control characters".into(),
        );
    }
    if !p.starts_with('/') {
        return Err(format!(
            "must be an absolute path (such as /srv/repos), got {p:?}"
        ));
    }
    Ok(())
}

/// The `localPath` (or older `path`) of a stored or submitted `gitConfig`.
fn local_path_of(git_config: &Value) -> Option<&str> {
    git_config["localPath"]
        .as_str()
        .or_else(|| git_config["path"].as_str())
}

/// Whether an update changes where the source reads repositories from.
fn moves_location(body: &Body, current: &Value) -> bool {
    let provider_changes = body
        .raw("providerType")
        .is_some_and(|p| p.as_str() != current["provider_type"].as_str());
    let path_changes = body
        .raw("gitConfig")
        .is_some_and(|g| local_path_of(g) != local_path_of(&current["git_config"]));
    provider_changes || path_changes
}

pub fn create(ctx: &SourceCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::ContextCreate)?;
    caller.require_unscoped()?;
    let mut body = Body::parse(&req.body)?;
    let org = body.string("orgId", true, 255);
    let name = body.string("name", true, 255);
    let method_given = body.has("verificationMethod");
    let chosen = body.choice("verificationMethod", METHODS);
    let method_ok = chosen.is_some() || !method_given;
    let method = chosen.unwrap_or_else(|| "hmac_sha256".into());
    let config = body.object("verificationConfig").unwrap_or_default();
    let (public, secret) = split_config(&mut body, &method, &config);
    // An invalid method is reported once, not again as a missing secret of the default.
    if let (true, Some(field), None) = (method_ok, secret_field(&method), &secret) {
        body.problem(
            &format!("verificationConfig.{field}"),
            format!("is required for {method} (a source without it would reject every webhook)"),
        );
    }
    let mut cols = columns(&mut body);
    body.finish()?;
    cols.push(("verification_method", Val::Text(Some(method))));
    cols.push(("verification_config", Val::Json(Some(public))));
    let (org, name) = (org.unwrap_or_default(), name.unwrap_or_default());
    let mut conn = ctx.pool.get()?;
    let row = generic::create(
        &mut conn,
        ctx.secrets,
        &org,
        &name,
        &cols,
        secret.as_deref(),
    )
    .map_err(|e| match e.sqlstate() {
        Some("23505") => ApiError::Status(
            409,
            format!("A generic source named {name:?} already exists in org {org:?}"),
        ),
        _ => ApiError::Db(e),
    })?;
    drop(conn);
    ctx.refresh_source(
        Kind::Generic,
        row["routing_key"].as_str().unwrap_or_default(),
    );
    log::info!(
        "generic source {} created by token {}",
        row["routing_key"].as_str().unwrap_or_default(),
        caller.token_id
    );
    Ok(Response::json(201, &json!({ "source": row })))
}

fn wants_secrets(req: &Request, caller: &Caller) -> Result<bool, ApiError> {
    let wants = req
        .query_pairs()
        .iter()
        .any(|(k, v)| k == "includeSecrets" && v == "true");
    if wants {
        caller.require(Permission::SecretRead)?;
    }
    Ok(wants)
}

/// Puts the decrypted secret back into `verification_config` (for `includeSecrets=true`).
fn reveal(ctx: &SourceCtx, row: &mut Value) -> Result<(), ApiError> {
    let method = row["verification_method"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (Some(field), Some(id)) = (secret_field(&method), row["id"].as_str().map(str::to_owned))
    else {
        return Ok(());
    };
    if let Some(secret) = ctx
        .pool
        .with_retry(|c| generic::secret(c, ctx.secrets, &id))?
    {
        row["verification_config"][field] = secret.into();
    }
    Ok(())
}

pub fn list(ctx: &SourceCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::ContextRead)?;
    let query = req.query_pairs();
    let flag = |name: &str| query.iter().any(|(k, v)| k == name && v == "true");
    let Some(org) = query
        .iter()
        .find(|(k, v)| k == "orgId" && !v.is_empty())
        .map(|(_, v)| v.clone())
    else {
        return Err(ApiError::Status(
            400,
            "Missing orgId query parameter".into(),
        ));
    };
    let reveal_secrets = wants_secrets(req, caller)?;
    let rows = ctx
        .pool
        .with_retry(|c| generic::list(c, &org, flag("includeDeleted")))?;
    let mut visible: Vec<Value> = rows
        .into_iter()
        .filter(|r| caller.sees(r["routing_key"].as_str().unwrap_or_default()))
        .collect();
    if reveal_secrets {
        for row in visible.iter_mut() {
            reveal(ctx, row)?;
        }
    }
    Ok(Response::json(200, &json!({ "sources": visible })))
}

/// The live row, after the scope check on its routing key.
fn lookup(ctx: &SourceCtx, caller: &Caller, id: &str) -> Result<Value, ApiError> {
    let row = ctx
        .pool
        .with_retry(|c| generic::get(c, id))?
        .ok_or_else(|| not_found("Source"))?;
    caller.require_key(row["routing_key"].as_str().unwrap_or_default())?;
    Ok(row)
}

pub fn get(ctx: &SourceCtx, caller: &Caller, req: &Request, id: &str) -> ApiResult {
    caller.require(Permission::ContextRead)?;
    let reveal_secrets = wants_secrets(req, caller)?;
    let mut row = lookup(ctx, caller, id)?;
    if reveal_secrets {
        reveal(ctx, &mut row)?;
    }
    Ok(Response::json(200, &json!({ "source": row })))
}

pub fn update(ctx: &SourceCtx, caller: &Caller, req: &Request, id: &str) -> ApiResult {
    caller.require(Permission::ContextUpdate)?;
    let current = lookup(ctx, caller, id)?;
    let mut body = Body::parse(&req.body)?;
    if moves_location(&body, &current) {
        caller.require_location_change()?;
    }
    let mut cols = columns(&mut body);
    if let Some(name) = body.string("name", false, 255) {
        cols.push(("name", Val::Text(Some(name))));
    }
    let current_method = current["verification_method"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    let method = body
        .choice("verificationMethod", METHODS)
        .unwrap_or_else(|| current_method.clone());
    let has_secret = current["has_secret"].as_bool().unwrap_or(false);
    let mut secret_change = SecretChange::Keep;
    if body.has("verificationMethod") || body.has("verificationConfig") {
        let config = body.object("verificationConfig").unwrap_or_default();
        let (public, secret) = split_config(&mut body, &method, &config);
        secret_change = match (secret_field(&method), secret) {
            (Some(_), Some(s)) => SecretChange::Set(s),
            (Some(_), None) if method == current_method && has_secret => SecretChange::Keep,
            (Some(field), None) => {
                body.problem(
                    &format!("verificationConfig.{field}"),
                    format!("is required for {method}"),
                );
                SecretChange::Keep
            }
            (None, _) if has_secret => SecretChange::Clear,
            (None, _) => SecretChange::Keep,
        };
        cols.push(("verification_method", Val::Text(Some(method))));
        cols.push(("verification_config", Val::Json(Some(public))));
    }
    body.finish()?;
    if secret_change != SecretChange::Keep {
        caller.require(Permission::SecretWrite)?;
    }
    let mut conn = ctx.pool.get()?;
    let row = generic::update(&mut conn, ctx.secrets, id, &cols, &secret_change)
        .map_err(|e| match e.sqlstate() {
            Some("23505") => ApiError::Status(
                409,
                "Another generic source in this org already has that name".into(),
            ),
            _ => ApiError::Db(e),
        })?
        .ok_or_else(|| not_found("Source"))?;
    ctx.refresh_source(
        Kind::Generic,
        current["routing_key"].as_str().unwrap_or_default(),
    );
    drop(conn);
    ctx.refresh_source(
        Kind::Generic,
        current["routing_key"].as_str().unwrap_or_default(),
    );
    log::info!("generic source {id} updated by token {}", caller.token_id);
    Ok(Response::json(200, &json!({ "source": row })))
}

pub fn delete(ctx: &SourceCtx, caller: &Caller, req: &Request, id: &str) -> ApiResult {
    caller.require(Permission::ContextDelete)?;
    let hard = req
        .query_pairs()
        .iter()
        .any(|(k, v)| k == "hard" && v == "true");
    let row = lookup(ctx, caller, id)?;
    let mut conn = ctx.pool.get()?;
    if !generic::delete(&mut conn, id, hard)? {
        return Err(not_found("Source"));
    }
    drop(conn);
    ctx.refresh_source(
        Kind::Generic,
        row["routing_key"].as_str().unwrap_or_default(),
    );
    log::info!(
        "generic source {id} {} by token {}",
        if hard { "deleted" } else { "soft-deleted" },
        caller.token_id
    );
    Ok(Response::json(
        200,
        &json!({ "deleted": true, "hard": hard }),
    ))
}

pub fn set_enabled(ctx: &SourceCtx, caller: &Caller, id: &str, enabled: bool) -> ApiResult {
    caller.require(Permission::ContextUpdate)?;
    let row = lookup(ctx, caller, id)?;
    if !ctx
        .pool
        .with_retry(|c| generic::set_enabled(c, id, enabled))?
    {
        return Err(not_found("Source"));
    }
    ctx.refresh_source(
        Kind::Generic,
        row["routing_key"].as_str().unwrap_or_default(),
    );
    Ok(Response::json(200, &json!({ "enabled": enabled })))
}
