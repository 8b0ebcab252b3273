//! The admin API under `/api/v1/admin` (docs/operations.md, "Admin API and tokens"): bearer-token
//! authentication, the role table on every route (rbac.rs), routing-key scopes, and the error
//! shapes. Order of checks on every route: token (401) → permission (403) → scope (403) → body
//! (400) → lookup (404) → conflict (409).

mod agents;
mod body;
mod environments;
mod generic;
mod github;
mod logs;
mod runs;
mod secret_routes;
mod secrets;

use serde_json::json;

use super::{parse::percent_decode, Request, Response};
use crate::{
    app::App,
    db::{self, migrate, DbError, Pool},
    rbac::{Caller, Denied, Permission, Role},
};

pub use body::Body;

/// The largest admin request body: every admin payload is a small JSON object, so anything
/// near this is a mistake or an attack (413, answered before a byte of it is read).
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Why an admin request failed; `into_response` gives the documented error shape.
#[derive(Debug)]
pub enum ApiError {
    Status(u16, String),
    Denied(Denied),
    /// 400 `Validation error` with (path, message) details.
    Validation(Vec<(String, String)>),
    Db(DbError),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        ApiError::Db(e)
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        ApiError::Denied(d)
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub fn not_found(what: &str) -> ApiError {
    ApiError::Status(404, format!("{what} not found"))
}

impl ApiError {
    fn into_response(self, req: &Request) -> Response {
        match self {
            ApiError::Status(status, msg) => Response::error(status, &msg),
            ApiError::Denied(d) => Response::error(403, &d.to_string()),
            ApiError::Validation(details) => {
                let details: Vec<_> = details
                    .iter()
                    .map(|(p, m)| json!({ "path": p, "message": m }))
                    .collect();
                Response::json(
                    400,
                    &json!({ "error": "Validation error", "details": details }),
                )
            }
            ApiError::Db(e) => match e.sqlstate() {
                Some("23505") => Response::error(409, "Conflict: resource already exists"),
                Some("22P02") => {
                    Response::error(400, "Invalid request: malformed value for a typed field")
                }
                _ if e.is_unavailable() => {
                    log::warn!(
                        "admin {} {}: database unavailable: {e}",
                        req.method,
                        req.path
                    );
                    Response::error(503, "Database unavailable, try again")
                        .with_header("Retry-After", "5")
                }
                _ => {
                    log::error!(
                        "admin {} {} failed (request {}): {e}",
                        req.method,
                        req.path,
                        req.request_id
                    );
                    Response::error(500, "Internal server error")
                }
            },
        }
    }
}

/// Entry point for every path below `/api/v1/admin` (`rest` starts after it).
pub fn handle(app: &App, req: &Request, rest: &str) -> Response {
    match route(app, req, rest) {
        Ok(r) => r,
        Err(e) => e.into_response(req),
    }
}

/// Authenticates an admin request and resolves its route from the head, before its body is
/// read (`Handler::admit`): a stranger's body is never read, nor the body of a call to a route
/// that does not exist; the caller found is reused by `handle`.
pub fn admit(app: &App, req: &Request, rest: &str) -> Result<Caller, Response> {
    let checked = authenticate(&app.pool, req).and_then(|caller| {
        let segments = segments(rest)?;
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        resolve(&seg, &req.method)?;
        Ok(caller)
    });
    checked.map_err(|e| e.into_response(req))
}

fn route(app: &App, req: &Request, rest: &str) -> ApiResult {
    let caller = match &req.caller {
        Some(caller) => caller.clone(),
        None => authenticate(&app.pool, req)?,
    };
    let segments = segments(rest)?;
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let c = &caller;
    match resolve(&seg, &req.method)? {
        Op::SourceList => github::list(&app.sources(), c),
        Op::SourceCreate => github::create(&app.sources(), c, req),
        Op::SourceUpdate(rk) => github::update(&app.sources(), c, req, rk),
        Op::SourceDelete(rk) => github::delete(&app.sources(), c, rk),
        Op::SourceSecret(rk) => github::webhook_secret(&app.sources(), c, rk),
        Op::GenericList => generic::list(&app.sources(), c, req),
        Op::GenericCreate => generic::create(&app.sources(), c, req),
        Op::GenericGet(id) => generic::get(&app.sources(), c, req, id),
        Op::GenericUpdate(id) => generic::update(&app.sources(), c, req, id),
        Op::GenericDelete(id) => generic::delete(&app.sources(), c, req, id),
        Op::GenericEnable(id, on) => generic::set_enabled(&app.sources(), c, id, on),
        Op::TokenList => list_tokens(&app.pool, c),
        Op::TokenCreate => create_token(&app.pool, c, req),
        Op::TokenRevoke(id) => revoke_token(&app.pool, c, id),
        Op::AgentTokenList => agents::list(&app.agents(), c),
        Op::AgentTokenCreate => agents::create(&app.agents(), c, req),
        Op::AgentTokenRevoke(id) => agents::revoke(&app.agents(), c, id),
        Op::RunList => runs::list(&app.runs(), c, req),
        Op::RunShow(id) => runs::show(&app.runs(), c, id),
        Op::RunLogs(id) => logs::read(&app.runs(), c, req, id),
        Op::RunCancel(id) => agents::cancel_run(&app.agents(), c, req, id),
        Op::Migrate => run_migrations(&app.pool, c),
        Op::MigrationStatus => migration_status(&app.pool, c),
        Op::Secret(op) => secret_routes::handle(&app.workflow_secrets(), c, req, op),
    }
}

/// The path below `/api/v1/admin`, split and percent-decoded.
fn segments(rest: &str) -> Result<Vec<String>, ApiError> {
    rest.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode(s)
                .ok_or_else(|| ApiError::Status(400, "Invalid percent-encoding in the path".into()))
        })
        .collect()
}

/// One admin operation, resolved from path and method alone so it is known before the body is
/// read. The borrowed values are path segments (routing key or id).
enum Op<'a> {
    SourceList,
    SourceCreate,
    SourceUpdate(&'a str),
    SourceDelete(&'a str),
    SourceSecret(&'a str),
    GenericList,
    GenericCreate,
    GenericGet(&'a str),
    GenericUpdate(&'a str),
    GenericDelete(&'a str),
    GenericEnable(&'a str, bool),
    TokenList,
    TokenCreate,
    TokenRevoke(&'a str),
    AgentTokenList,
    AgentTokenCreate,
    AgentTokenRevoke(&'a str),
    RunList,
    RunShow(&'a str),
    RunLogs(&'a str),
    RunCancel(&'a str),
    Migrate,
    MigrationStatus,
    /// Workflow secrets, environments, rotation and audit (`secrets.rs`, `environments.rs`).
    Secret(secret_routes::SecretOp<'a>),
}

/// The operation of `seg` + `method`; 405 for a known path with another method, else 404.
fn resolve<'a>(seg: &[&'a str], method: &str) -> Result<Op<'a>, ApiError> {
    if let Some(op) = secret_routes::resolve(seg, method) {
        return op.map(Op::Secret);
    }
    Ok(match (seg, method) {
        (["sources"], "GET") => Op::SourceList,
        (["sources"], "POST") => Op::SourceCreate,
        (["sources", rk], "PATCH") => Op::SourceUpdate(rk),
        (["sources", rk], "DELETE") => Op::SourceDelete(rk),
        (["sources", rk, "webhook-secret"], "GET") => Op::SourceSecret(rk),
        (["generic-sources"], "GET") => Op::GenericList,
        (["generic-sources"], "POST") => Op::GenericCreate,
        (["generic-sources", id], "GET") => Op::GenericGet(id),
        (["generic-sources", id], "PATCH") => Op::GenericUpdate(id),
        (["generic-sources", id], "DELETE") => Op::GenericDelete(id),
        (["generic-sources", id, action @ ("enable" | "disable")], "POST") => {
            Op::GenericEnable(id, *action == "enable")
        }
        (["tokens"], "GET") => Op::TokenList,
        (["tokens"], "POST") => Op::TokenCreate,
        (["tokens", id], "DELETE") => Op::TokenRevoke(id),
        (["agent-tokens"], "GET") => Op::AgentTokenList,
        (["agent-tokens"], "POST") => Op::AgentTokenCreate,
        (["agent-tokens", id], "DELETE") => Op::AgentTokenRevoke(id),
        (["runs"], "GET") => Op::RunList,
        (["runs", id], "GET") => Op::RunShow(id),
        (["runs", id, "logs"], "GET") => Op::RunLogs(id),
        (["runs", id, "cancel"], "POST") => Op::RunCancel(id),
        (["db", "migrate"], "POST") => Op::Migrate,
        (["db", "migrate", "status"], "GET") => Op::MigrationStatus,
        (["sources"] | ["generic-sources"] | ["tokens"] | ["agent-tokens"] | ["runs"], _)
        | (["agent-tokens", _] | ["runs", _] | ["runs", _, "cancel" | "logs"], _)
        | (["sources", _] | ["generic-sources", _] | ["tokens", _], _)
        | (["sources", _, "webhook-secret"] | ["generic-sources", _, "enable" | "disable"], _)
        | (["db", "migrate"] | ["db", "migrate", "status"], _) => {
            return Err(ApiError::Status(405, "Method not allowed".into()))
        }
        _ => return Err(not_found("Route")),
    })
}

fn authenticate(pool: &Pool, req: &Request) -> Result<Caller, ApiError> {
    let token = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Status(401, "Missing authorization".into()))?;
    pool.with_retry(|c| db::tokens::authenticate(c, token))?
        .ok_or_else(|| ApiError::Status(401, "Invalid or expired token".into()))
}

fn list_tokens(pool: &Pool, caller: &Caller) -> ApiResult {
    caller.require(Permission::TokenManage)?;
    caller.require_unscoped()?;
    let tokens = pool.with_retry(db::tokens::list)?;
    Ok(Response::json(200, &json!({ "tokens": tokens })))
}

fn create_token(pool: &Pool, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::TokenManage)?;
    caller.require_unscoped()?;
    let mut body = Body::parse(&req.body)?;
    let label = body.string("label", true, 255);
    let role = body.choice("role", &["owner", "admin", "auditor"]);
    if role.is_none() && !body.has("role") {
        body.problem("role", "is required");
    }
    let routing_key = body.string("routingKey", false, 500);
    if label.as_deref() == Some(db::tokens::BOOTSTRAP_LABEL) {
        body.problem(
            "label",
            "\"bootstrap\" is reserved for the token of KICI_BOOTSTRAP_ADMIN_TOKEN; choose another label",
        );
    }
    body.finish()?;
    let (label, role) = (
        label.unwrap_or_default(),
        role.and_then(|r| Role::parse(&r)).unwrap_or(Role::Auditor),
    );
    let mut conn = pool.get()?;
    let (token, id) = db::tokens::create(&mut conn, &label, role, routing_key.as_deref())?;
    log::info!(
        "admin token {id} ({role}, label {label:?}) created by token {}",
        caller.token_id
    );
    Ok(Response::json(201, &json!({ "token": token, "id": id })))
}

fn revoke_token(pool: &Pool, caller: &Caller, id: &str) -> ApiResult {
    caller.require(Permission::TokenManage)?;
    caller.require_unscoped()?;
    if !pool.with_retry(|c| db::tokens::revoke(c, id))? {
        return Err(not_found("Token"));
    }
    log::info!("admin token {id} revoked by token {}", caller.token_id);
    Ok(Response::json(200, &json!({ "revoked": true })))
}

fn run_migrations(pool: &Pool, caller: &Caller) -> ApiResult {
    caller.require(Permission::DbMigrate)?;
    caller.require_unscoped()?;
    let mut conn = pool.get()?;
    let applied = migrate::migrate(&mut conn).map_err(|e| match e {
        DbError::Refused(m) => ApiError::Status(409, m),
        other => ApiError::Db(other),
    })?;
    let names: Vec<&str> = applied.iter().map(|a| a.name.as_str()).collect();
    Ok(Response::json(
        200,
        &json!({ "applied": applied.len(), "migrations": names }),
    ))
}

fn migration_status(pool: &Pool, caller: &Caller) -> ApiResult {
    caller.require(Permission::DbStatus)?;
    caller.require_unscoped()?;
    let statuses = pool.with_retry(migrate::status)?;
    Ok(Response::json(200, &json!({ "migrations": statuses })))
}
