//! `cache.*` / `provenance.*` (docs/agent-protocol.md, "Cache and upload URLs"): upload URLs and
//! commits for the keys the job's own dispatch allows (src/agent/cache_keys.rs), the documented
//! "unavailable" answers otherwise. A refused key also gets an `error` frame naming the key and
//! why, next to the ordinary answer with `uploadUrl: ""` (so the agent does not wait 30 s for one).

use serde_json::{json, Value};

use super::{cache_keys, Agent, Hub};
use crate::storage::{Area, Audience, Meta};

/// The frames to send back for one cache/provenance message.
pub fn on_request(hub: &Hub, agent: &Agent, kind: &str, job_id: &str, f: &Value) -> Vec<Value> {
    let request_id = f["messageId"].as_str().unwrap_or("").to_owned();
    let owned = hub.owned_by(agent, job_id);
    if owned.is_none() {
        log::warn!(
            "agent {} (token {}) sent {kind} for job {job_id}, which it does not hold; refused",
            agent.id,
            agent.token().shown()
        );
    }
    let is_upload = kind.starts_with("cache.upload") || kind.starts_with("provenance.upload");
    let granted = match (&owned, is_upload) {
        (Some(o), true) => Some(cache_keys::upload_key(kind, f, &o.scope, &agent.platform)),
        _ => None,
    };
    let mut out = Vec::new();
    if let Some(Err(why)) = &granted {
        log::warn!("agent {} job {job_id}: {why}", agent.id);
        out.push(
            json!({ "type": "error", "code": "CACHE_KEY_REFUSED", "requestId": request_id,
                         "jobId": job_id, "message": why }),
        );
    }
    let granted = granted.and_then(Result::ok);
    let storage = hub.storage.as_ref();
    let now = jiff::Timestamp::now();
    match kind {
        "cache.upload.request" | "provenance.upload.request" => {
            let url = match (storage, &granted) {
                (Some(s), Some(g)) => s
                    .upload_url(Area::Cache, &g.key, Audience::Agent, now)
                    .unwrap_or_else(|e| {
                        log::warn!("upload URL for {} failed: {e}", g.key);
                        String::new()
                    }),
                _ => String::new(),
            };
            let reply = if kind.starts_with("cache") {
                "cache.upload.response"
            } else {
                "provenance.upload.response"
            };
            out.push(json!({ "type": reply, "requestId": request_id, "uploadUrl": url }));
        }
        "cache.upload.complete" | "provenance.upload.complete" => {
            if let (Some(s), Some(g)) = (storage, &granted) {
                if let Err(e) = s.commit(Area::Cache, &g.key, now) {
                    log::warn!("committing {} failed: {e}", g.key);
                }
                let deps_hash = f["depsHash"].as_str().unwrap_or("");
                if let (Some(hash_key), false) = (&g.deps_hash_key, deps_hash.is_empty()) {
                    let meta = Meta::new(now);
                    if let Err(e) = s.put(Area::Cache, hash_key, deps_hash.as_bytes(), Some(&meta))
                    {
                        log::warn!("writing {hash_key} failed: {e}");
                    }
                }
            }
        }
        // No user caches here: the documented miss and skip, for any job.
        "cache.user.restore.request" => out.push(
            json!({ "type": "cache.user.restore.response", "requestId": request_id, "hit": false }),
        ),
        "cache.user.save.request" => out.push(
            json!({ "type": "cache.user.save.response", "requestId": request_id, "skip": true }),
        ),
        _ => {}
    }
    out
}
