//! Tarball URLs in `job.dispatch` (docs/caches.md, "At dispatch"): an execution job's stored
//! dispatch names its tarball keys; when it is sent, each fresh one becomes a presigned GET URL
//! (signed now, so a job that waited long still gets a live one) with its hash, and whether each
//! was a hit is recorded for `runs show`. A miss leaves the field out: the agent clones and
//! installs inline, as without storage.

use serde_json::{json, Value};

use super::{build::TARBALLS_KEY, claims, user::Namespace};
use crate::{
    db::Pool,
    storage::{Audience, Storage},
};

/// The tarball fields of one dispatch, and what was a hit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Presigned {
    pub fields: Vec<(&'static str, String)>,
    /// (kind, key, hit).
    pub uses: Vec<(&'static str, String, bool)>,
}

/// Looks the keys of `tarballs` (the stored [`TARBALLS_KEY`] value) up in `storage`.
pub fn presign(storage: &Storage, tarballs: &Value, now: jiff::Timestamp) -> Presigned {
    let mut out = Presigned::default();
    let text = |k: &str| {
        tarballs
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let url = |key: &str| {
        storage
            .cached_url(key, Audience::Agent, now)
            .unwrap_or_else(|e| {
                log::warn!("presigning {key} failed: {e}");
                None
            })
    };
    if let Some(key) = text("source") {
        let got = url(key);
        if let (Some(u), Some(hash)) = (&got, text("sourceHash")) {
            out.fields.push(("sourceTarUrl", u.clone()));
            out.fields.push(("sourceTarHash", hash.to_owned()));
        }
        out.uses.push(("source", key.to_owned(), got.is_some()));
    }
    if let (Some(key), Some(hash_key)) = (text("deps"), text("depsHashKey")) {
        let hash = storage
            .cached_bytes(hash_key, now)
            .unwrap_or_else(|e| {
                log::warn!("reading {hash_key} failed: {e}");
                None
            })
            .and_then(|b| String::from_utf8(b).ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        let got = hash.as_ref().and_then(|_| url(key));
        if let (Some(u), Some(h)) = (&got, hash) {
            out.fields.push(("depsUrl", u.clone()));
            out.fields.push(("depsHash", h));
        }
        out.uses.push(("deps", key.to_owned(), got.is_some()));
    }
    out
}

/// Takes the stored tarball keys out of `frame` and, with storage, puts fresh URLs in their
/// place (recording hits and misses for job `job_id`).
/// With storage, the frame also names the job's workflow-cache namespace (`orgId`, `repoId`,
/// `cacheRefScope`), as the agent reads them.
pub fn add_tarball_urls(frame: &mut Value, job_id: &str, storage: Option<&Storage>, pool: &Pool) {
    let tarballs = frame.as_object_mut().and_then(|o| o.remove(TARBALLS_KEY));
    let Some(storage) = storage else {
        return;
    };
    let run_id = frame["runId"].as_str().unwrap_or("").to_owned();
    if let Some(ns) = Namespace::of(&run_id, frame) {
        frame["orgId"] = json!(ns.org);
        frame["repoId"] = json!(format!("{}/{}", ns.org, ns.repo));
        frame["cacheRefScope"] = json!(ns.ref_scope());
    }
    let Some(tarballs) = tarballs else {
        return;
    };
    let found = presign(storage, &tarballs, jiff::Timestamp::now());
    for (k, v) in &found.fields {
        frame[*k] = json!(v);
    }
    let uses: Vec<(&str, &str, bool)> = found
        .uses
        .iter()
        .map(|(k, key, hit)| (*k, key.as_str(), *hit))
        .collect();
    if let Err(e) = pool.with_retry(|c| claims::record_use(c, job_id, &uses)) {
        log::warn!("recording the cache use of job {job_id} failed: {e}");
    }
}
