//! Agent tokens (`/agent-tokens`) and run cancellation (`/runs/:runId/cancel`).

use serde_json::json;

use super::{not_found, ApiError, ApiResult, Body};
use crate::{
    app::AgentCtx,
    db::agent_tokens,
    http::{Request, Response},
    rbac::{Caller, Permission},
};

pub fn list(ctx: &AgentCtx, caller: &Caller) -> ApiResult {
    caller.require(Permission::TokenManage)?;
    caller.require_unscoped()?;
    let tokens = ctx.pool.with_retry(agent_tokens::list)?;
    Ok(Response::json(200, &json!({ "tokens": tokens })))
}

/// `{description?, labels?: [..], mandatoryLabels?: [..]}` → 201 `{token, id, prefix}`; the
/// plaintext is shown only here.
pub fn create(ctx: &AgentCtx, caller: &Caller, req: &Request) -> ApiResult {
    caller.require(Permission::TokenManage)?;
    caller.require_unscoped()?;
    let mut body = Body::parse(&req.body)?;
    let description = body.string("description", false, 255);
    let labels = body.string_list("labels");
    let mandatory = body.string_list("mandatoryLabels").unwrap_or_default();
    for label in labels.iter().flatten().chain(&mandatory) {
        if label.is_empty() || label.len() > 255 || label.chars().any(char::is_whitespace) {
            body.problem(
                "labels",
                format!("{label:?} is not a label (non-empty, at most 255 characters, no spaces)"),
            );
        }
    }
    body.finish()?;
    let created_by = format!("admin-token:{}", caller.token_id);
    let mut conn = ctx.pool.get()?;
    let (token, id) = agent_tokens::create(
        &mut conn,
        description.as_deref(),
        labels.as_deref(),
        &mandatory,
        &created_by,
    )?;
    log::info!(
        "agent token {id} created by admin token {}",
        caller.token_id
    );
    Ok(Response::json(
        201,
        &json!({ "token": token, "id": id, "prefix": &token[..12] }),
    ))
}

/// Revokes the token and ends its agents' live sessions here at once (other orchestrators on
/// the database notice within a second: src/agent/revoke.rs); their jobs are requeued.
pub fn revoke(ctx: &AgentCtx, caller: &Caller, id: &str) -> ApiResult {
    caller.require(Permission::TokenManage)?;
    caller.require_unscoped()?;
    let revoked = ctx.pool.with_retry(|c| agent_tokens::revoke(c, id))?;
    if revoked.is_empty() {
        return Err(not_found("Agent token"));
    }
    let ended = ctx.agents.revoke_tokens(&revoked);
    log::info!(
        "agent token {id} revoked by admin token {} ({ended} live session(s) ended)",
        caller.token_id
    );
    Ok(Response::json(200, &json!({ "revoked": true })))
}

/// `{force?: bool}` → `{cancelledJobs}`: running jobs get `job.cancel`, queued ones end now.
pub fn cancel_run(ctx: &AgentCtx, caller: &Caller, req: &Request, run_id: &str) -> ApiResult {
    caller.require(Permission::ContextUpdate)?;
    caller.require_unscoped()?;
    let body = Body::parse(if req.body.is_empty() {
        b"{}"
    } else {
        &req.body
    })?;
    let force = body.raw("force").and_then(|v| v.as_bool()).unwrap_or(false);
    body.finish()?;
    let exists = ctx
        .pool
        .with_retry(|c| crate::runs::store::runs::exists(c, run_id))?;
    if !exists {
        return Err(not_found("Run"));
    }
    let n = ctx
        .agents
        .cancel_run(run_id, force, "run cancelled via API")
        .map_err(ApiError::Db)?;
    log::info!(
        "run {run_id} cancelled by admin token {} ({n} job(s))",
        caller.token_id
    );
    Ok(Response::json(200, &json!({ "cancelledJobs": n })))
}
