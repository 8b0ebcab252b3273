//! `GET /health` (process is up) and `GET /ready` (the database answers), docs/operations.md,
//! "Readiness and supervised threads".

use std::time::Instant;

use serde_json::json;

use super::Response;
use crate::{db::Pool, platform::Link};

pub fn health(started: Instant) -> Response {
    Response::json(
        200,
        &json!({
            "status": "ok",
            "timestamp": jiff::Timestamp::now().to_string(),
            "uptime": started.elapsed().as_secs_f64(),
            "version": env!("CARGO_PKG_VERSION"),
            "buildDate": env!("KICI_BUILD_DATE"),
            "buildCommit": env!("KICI_BUILD_COMMIT"),
            "sdkVersion": "unknown",
            "sdkBundleHash": "unknown",
            "sharedVersion": "unknown",
            "sharedBundleHash": "unknown",
            "engineVersion": "unknown",
            "engineBundleHash": "unknown",
        }),
    )
}

/// Ready while a pooled connection can run a query and no supervised thread keeps panicking.
/// Follows the database both ways without a restart: a broken connection is dropped and the next
/// check opens a new one. The Platform link's state is reported alongside (`platform`) but does not
/// decide readiness: direct webhooks, admin calls and agents keep working while the Platform is
/// unreachable.
pub fn ready(pool: &Pool, link: Option<&Link>) -> Response {
    let db = pool.with_retry(|c| {
        c.simple_query("SELECT 1")
            .map(|_| ())
            .map_err(crate::db::DbError::query("readiness check"))
    });
    let mut body = match &db {
        Ok(()) => json!({ "status": "ready", "checks": { "database": true } }),
        Err(e) => {
            log::warn!("not ready: {e}");
            json!({ "status": "not ready", "checks": { "database": false } })
        }
    };
    if let Some(link) = link {
        body["platform"] = link.ready_json();
    }
    // A supervised thread that keeps panicking (the dispatcher, a pipeline worker, …) means work
    // is not being done even though requests are answered: not ready.
    let failing = crate::supervise::failing();
    body["threads"] = crate::supervise::report();
    let ok = db.is_ok() && failing.is_empty();
    if !failing.is_empty() {
        log::warn!(
            "not ready: thread(s) keep panicking: {}",
            failing.join(", ")
        );
        body["status"] = json!("not ready");
        body["checks"]["threads"] = json!(false);
        body["failingThreads"] = json!(failing);
    }
    Response::json(if ok { 200 } else { 503 }, &body)
}
