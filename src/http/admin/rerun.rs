//! `POST /runs/:runId/rerun` and `POST /events/:id/replay` (docs/operations.md, "Reruns and
//! replays"): a finished run started again at the same commit, and a recorded delivery processed
//! again with the lock file as it is now. Both need `context.update` (owner or admin); a token
//! restricted to a routing key reaches only its key's runs and deliveries. The work is done on
//! the request's thread by `pipeline::rerun` (it may read the lock file from GitHub).

use serde_json::json;

use super::{body::Body, ApiError, ApiResult};
use crate::{
    http::{Request, Response},
    pipeline::{
        process::Deps,
        rerun::{self, Ask, RerunError},
    },
    rbac::{Caller, Denied, Permission},
};

/// `{failedOnly?: bool}` → 201 `{runId, rerunOf, workflowName, sha, failedOnly, triggeredBy,
/// keptJobs, failureReason}`.
pub fn rerun_run(deps: &Deps, caller: &Caller, req: &Request, run_id: &str) -> ApiResult {
    caller.require(Permission::ContextUpdate)?;
    let body = Body::parse(if req.body.is_empty() {
        b"{}"
    } else {
        &req.body
    })?;
    let failed_only = match body.raw("failedOnly") {
        None | Some(serde_json::Value::Null) => Some(false),
        Some(v) => v.as_bool(),
    };
    let mut body = body;
    if failed_only.is_none() {
        body.problem("failedOnly", "must be true or false");
    }
    body.finish()?;
    let failed_only = failed_only.unwrap_or(false);
    let previous = deps
        .pool
        .with_retry(|c| rerun::run_ref(c, run_id))?
        .ok_or_else(|| status(RerunError::UnknownRun(run_id.to_owned())))?;
    caller.require_key(previous.routing_key.as_deref().unwrap_or(""))?;
    let ask = Ask {
        failed_only,
        triggered_by: format!(
            "rerun{} by admin token {}",
            if failed_only {
                " (failed jobs only)"
            } else {
                ""
            },
            caller.token_id
        ),
        key: format!("rerun:{}", crate::crypto::random_uuid()),
    };
    let done = rerun::rerun_of(deps, &previous, &ask).map_err(status)?;
    log::info!(
        "run {} re-run as run {} by admin token {}",
        done.rerun_of,
        done.run_id,
        caller.token_id
    );
    Ok(Response::json(
        201,
        &json!({
            "runId": done.run_id,
            "rerunOf": done.rerun_of,
            "workflowName": done.workflow,
            "sha": done.sha,
            "failedOnly": failed_only,
            "triggeredBy": ask.triggered_by,
            "keptJobs": done.kept,
            "failureReason": done.failure,
        }),
    ))
}

/// 200 `{deliveryId, eventLogId, status, error, runs, decisions}`: the runs the replay started and
/// the delivery's outcome as now recorded.
pub fn replay(deps: &Deps, caller: &Caller, id: &str) -> ApiResult {
    caller.require(Permission::ContextUpdate)?;
    let triggered_by = format!("replay by admin token {}", caller.token_id);
    let key = format!("replay:{}", crate::crypto::random_uuid());
    let scope = caller.routing_key.as_deref();
    let done = rerun::replay(deps, id, &key, &triggered_by, scope).map_err(status)?;
    log::info!(
        "delivery {} replayed by admin token {}: {} run(s)",
        done.delivery_id,
        caller.token_id,
        done.runs.len()
    );
    Ok(Response::json(
        200,
        &json!({
            "deliveryId": done.delivery_id,
            "eventLogId": done.event_log_id,
            "status": done.status,
            "error": done.error,
            "runs": done.runs,
            "decisions": done.decisions,
            "triggeredBy": triggered_by,
        }),
    ))
}

/// The answer for a refused rerun or replay.
fn status(e: RerunError) -> ApiError {
    let code = match e {
        RerunError::Db(db) => return ApiError::Db(db),
        RerunError::OutOfScope => return ApiError::Denied(Denied::OtherRoutingKey),
        RerunError::UnknownRun(_) | RerunError::UnknownDelivery(_) => 404,
        RerunError::AmbiguousDelivery(_)
        | RerunError::Active { .. }
        | RerunError::NotProcessed { .. } => 409,
        RerunError::DeliveryGone { .. } | RerunError::NoPayload { .. } => 410,
        RerunError::NoRepository(_)
        | RerunError::LockFile { .. }
        | RerunError::WorkflowGone { .. }
        | RerunError::NothingFailed(_)
        | RerunError::NothingToRun(_) => 422,
        RerunError::Source(_) => 502,
    };
    ApiError::Status(code, e.to_string())
}
