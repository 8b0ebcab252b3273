//! `cache.*` / `provenance.*` (docs/agent-protocol.md, "Cache and upload URLs"): upload URLs and
//! commits for the keys the job's own dispatch allows (src/agent/cache_keys.rs), the documented
//! "unavailable" answers otherwise. A refused key also gets an `error` frame naming the key and
//! why, next to the ordinary answer with `uploadUrl: ""` (so the agent does not wait 30 s for one).
//! Workflow caches (`cache.user.*`) live in the job's own namespace (docs/caches.md, "Workflow
//! caches"); without storage or a namespace they answer the documented miss and skip.

use serde_json::{json, Value};

use super::{cache_keys, Agent, Hub};
use crate::{
    caches::user_store,
    storage::{Area, Audience, Meta},
};

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
        // Workflow caches (src/caches/user_store.rs): the namespace is the job's own.
        "cache.user.restore.request" => {
            let mut reply = json!({ "hit": false });
            if let (Some(s), Some(ns)) = (
                storage,
                owned.as_ref().and_then(|o| o.scope.user_cache.as_ref()),
            ) {
                let restore_keys: Vec<String> = f["restoreKeys"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let key = f["key"].as_str().unwrap_or("");
                match user_store::restore(s, ns, key, &restore_keys, now) {
                    Ok(found) => reply = found,
                    Err(e) => {
                        log::warn!("restoring workflow cache {key:?} for job {job_id} failed: {e}")
                    }
                }
            }
            reply["type"] = json!("cache.user.restore.response");
            reply["requestId"] = json!(request_id);
            out.push(reply);
        }
        "cache.user.save.request" => {
            let mut reply = json!({ "skip": true });
            if let (Some(s), Some(ns)) = (
                storage,
                owned.as_ref().and_then(|o| o.scope.user_cache.as_ref()),
            ) {
                let key = f["key"].as_str().unwrap_or("");
                match user_store::save_request(s, ns, job_id, key, now) {
                    Ok(r) => reply = r,
                    Err(e) => {
                        log::warn!("saving workflow cache {key:?} for job {job_id} failed: {e}")
                    }
                }
            }
            reply["type"] = json!("cache.user.save.response");
            reply["requestId"] = json!(request_id);
            out.push(reply);
        }
        "cache.user.save.complete" => {
            if let (Some(s), Some(ns)) = (
                storage,
                owned.as_ref().and_then(|o| o.scope.user_cache.as_ref()),
            ) {
                let key = f["key"].as_str().unwrap_or("");
                let hash = f["tarHash"].as_str().unwrap_or("");
                if let Err(e) = user_store::save_complete(s, ns, job_id, key, hash, now) {
                    log::warn!("committing workflow cache {key:?} for job {job_id} failed: {e}");
                }
            }
        }
        _ => {}
    }
    out
}
