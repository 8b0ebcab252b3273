//! GitHub App sources (docs/operations.md, "Admin API"). Unlike the reference, every route
//! checks the role table: auditors may list, nothing else; reading a webhook secret needs
//! `secret.read`.

use serde_json::json;

use super::{not_found, ApiError, ApiResult, Body};
use crate::{
    app::SourceCtx,
    config::Mode,
    db::sources::{self, NewSource, Update},
    github::api::{validate_app, AppIdentity, GitHubError, ValidationError},
    http::{Request, Response},
    rbac::{Caller, Permission},
    sources::registry::Kind,
};

pub fn list(ctx: &SourceCtx, caller: &Caller) -> ApiResult {
    caller.require(Permission::ContextRead)?;
    let all = ctx.pool.with_retry(sources::list)?;
    let visible: Vec<_> = all
        .into_iter()
        .filter(|s| caller.sees(s["routingKey"].as_str().unwrap_or_default()))
        .collect();
    Ok(Response::json(200, &json!({ "sources": visible })))
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Checks the key with GitHub (`GET /app` with an App JWT); GitHub's own reason on refusal.
fn check_with_github(
    ctx: &SourceCtx,
    app_id: &str,
    private_key: &str,
) -> Result<AppIdentity, ApiError> {
    validate_app(ctx.github, app_id, private_key, unix_now()).map_err(|e| match e {
        ValidationError::InvalidKey(k) => ApiError::Status(400, format!("Invalid private key: {k}")),
        ValidationError::GitHub(GitHubError::Rejected { message, .. }) => {
            ApiError::Status(400, format!("GitHub API validation failed: {message}"))
        }
        ValidationError::GitHub(other) => ApiError::Status(502, other.to_string()),
        ValidationError::AppIdMismatch { expected, got } => ApiError::Status(
            400,
            format!("GitHub API validation failed: the private key belongs to App {got}, not App {expected}"),
        ),
    })
}

pub fn create(ctx: &SourceCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::ContextCreate)?;
    caller.require(Permission::SecretWrite)?;
    caller.require_unscoped()?;
    let mut body = Body::parse(&req.body)?;
    let missing: Vec<&str> = ["provider", "name", "appId", "privateKey"]
        .into_iter()
        .filter(|f| {
            body.raw(f)
                .and_then(|v| v.as_str())
                .is_none_or(str::is_empty)
        })
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::Status(
            400,
            "Missing required fields: provider, name, appId, privateKey".into(),
        ));
    }
    let provider = body.string("provider", true, 50).unwrap_or_default();
    if provider != "github" {
        body.problem(
            "provider",
            "must be \"github\" (generic sources are created with POST /generic-sources)",
        );
    }
    let name = body.string("name", true, 255).unwrap_or_default();
    let app_id = body.string("appId", true, 20).unwrap_or_default();
    if !app_id.bytes().all(|b| b.is_ascii_digit()) {
        body.problem(
            "appId",
            "must be the App's numeric id (GitHub: Settings → Developer settings → GitHub Apps)",
        );
    }
    let private_key = body
        .string("privateKey", true, 16 * 1024)
        .unwrap_or_default();
    let webhook_secret = body.string("webhookSecret", false, 1024);
    body.finish()?;

    let routing_key = sources::routing_key(&app_id);
    if ctx
        .pool
        .with_retry(|c| sources::find(c, &routing_key))?
        .is_some()
    {
        return Err(ApiError::Status(
            409,
            format!("Source with routing key {routing_key} already exists"),
        ));
    }
    let identity = check_with_github(ctx, &app_id, &private_key)?;
    let new = NewSource {
        name: &identity.name,
        app_id: &app_id,
        slug: Some(&identity.slug),
        private_key: &private_key,
        webhook_secret: webhook_secret.as_deref(),
    };
    let mut conn = ctx.pool.get()?;
    let id = sources::create(&mut conn, ctx.secrets, &new).map_err(|e| match e.sqlstate() {
        Some("23505") => ApiError::Status(
            409,
            format!("Source with routing key {routing_key} already exists"),
        ),
        _ => ApiError::Db(e),
    })?;
    drop(conn);
    ctx.refresh_source(Kind::GitHub, &routing_key);
    log::info!(
        "GitHub source {routing_key} ({}) added by token {} (requested name {name:?})",
        identity.name,
        caller.token_id
    );
    let mut out = json!({ "routingKey": routing_key, "id": id, "name": identity.name, "slug": identity.slug });
    let (url, note) = webhook_url(ctx);
    out["webhookUrl"] = url.map_or(serde_json::Value::Null, |u| u.into());
    if let Some(note) = note {
        out["webhookNote"] = note.into();
    }
    Ok(Response::json(201, &out))
}

/// Where GitHub should post: our direct ingress in independent/hybrid mode when the public URL
/// is known; the Platform's URL in platform mode (not resolvable until the relay is connected).
fn webhook_url(ctx: &SourceCtx) -> (Option<String>, Option<&'static str>) {
    match (ctx.config.mode, &ctx.config.webhook_public_url) {
        (Mode::Platform, _) => (None, Some("platform-unavailable")),
        (_, Some(base)) => (
            Some(format!(
                "{}{}/webhook/__default__/github",
                base.trim_end_matches('/'),
                ctx.config.base_path
            )),
            None,
        ),
        (_, None) => (None, Some("no-public-url")),
    }
}

pub fn update(ctx: &SourceCtx, caller: &Caller, req: &Request, routing_key: &str) -> ApiResult {
    caller.require(Permission::ContextUpdate)?;
    caller.require_key(routing_key)?;
    let mut body = Body::parse(&req.body)?;
    let name = body.string("name", false, 255);
    let customer_id = body.string("customerId", false, 255);
    let config = body.object("config");
    let private_key = body.string("privateKey", false, 16 * 1024);
    let webhook_secret = body.string("webhookSecret", false, 1024);
    body.finish()?;
    if private_key.is_some() || webhook_secret.is_some() {
        caller.require(Permission::SecretWrite)?;
    }
    let Some((_, app_id)) = ctx.pool.with_retry(|c| sources::find(c, routing_key))? else {
        return Err(not_found("Source"));
    };
    if let Some(k) = &private_key {
        check_with_github(ctx, &app_id, k)?;
    }
    let update = Update {
        name: name.as_deref(),
        customer_id: customer_id.as_deref(),
        config: config.as_ref(),
        private_key: private_key.as_deref(),
        webhook_secret: webhook_secret.as_deref(),
    };
    let mut conn = ctx.pool.get()?;
    let Some(name) = sources::update(&mut conn, ctx.secrets, routing_key, &update)? else {
        return Err(not_found("Source"));
    };
    drop(conn);
    ctx.refresh_source(Kind::GitHub, routing_key);
    log::info!(
        "GitHub source {routing_key} updated by token {}",
        caller.token_id
    );
    Ok(Response::json(
        200,
        &json!({ "routingKey": routing_key, "name": name }),
    ))
}

pub fn delete(ctx: &SourceCtx, caller: &Caller, routing_key: &str) -> ApiResult {
    caller.require(Permission::ContextDelete)?;
    caller.require(Permission::SecretDelete)?;
    caller.require_key(routing_key)?;
    let mut conn = ctx.pool.get()?;
    if !sources::delete(&mut conn, routing_key)? {
        return Err(not_found("Source"));
    }
    drop(conn);
    ctx.refresh_source(Kind::GitHub, routing_key);
    log::info!(
        "GitHub source {routing_key} removed by token {}",
        caller.token_id
    );
    Ok(Response::json(200, &json!({ "ok": true })))
}

pub fn webhook_secret(ctx: &SourceCtx, caller: &Caller, routing_key: &str) -> ApiResult {
    caller.require(Permission::SecretRead)?;
    caller.require_key(routing_key)?;
    let Some(secret) = ctx
        .pool
        .with_retry(|c| sources::webhook_secret(c, ctx.secrets, routing_key))?
    else {
        return Err(not_found("Source"));
    };
    log::info!(
        "webhook secret of {routing_key} read by token {}",
        caller.token_id
    );
    Ok(Response::json(
        200,
        &json!({ "routingKey": routing_key, "webhookSecret": secret }),
    ))
}
