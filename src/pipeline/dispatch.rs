//! The stored `job.dispatch` body of a planned job (docs/agent-protocol.md, "Job dispatch"):
//! repository URL and a credential reference (never a token) by origin, the `jobConfig` keys the
//! agent reads, and the event as the agent's `SimulatedEvent`.

use serde_json::{json, Value};

use super::{
    credentials::{job_permissions, CredentialRef, DISPATCH_KEY},
    event::{NormalizedEvent, Provider},
    lockfile::{LockFile, LockWorkflow},
    plan::PlannedJob,
    process::Origin,
};

fn event_json(event: &NormalizedEvent) -> Value {
    let mut v = json!({
        "type": event.kind.as_str(),
        "payload": event.payload,
        "targetBranch": event.target_branch,
        "provider": match event.provider { Provider::Github => "github", Provider::Local => "local", Provider::Generic => "generic" },
        "isForkPR": event.is_fork_pr,
    });
    for (k, val) in [
        ("action", event.action.clone()),
        ("sourceBranch", event.source_branch.clone()),
        ("baseBranch", event.base_branch.clone()),
        ("senderUsername", event.sender_username.clone()),
        ("senderUserId", event.sender_user_id.clone()),
        ("sourceRepo", event.repo.clone()),
    ] {
        if let Some(val) = val {
            v[k] = json!(val);
        }
    }
    if let Some(files) = &event.changed_files {
        v["changedFiles"] = json!(files);
    }
    v
}

/// The stored `job.dispatch` body of one planned job (docs/agent-protocol.md, "Job dispatch").
pub(super) fn dispatch_body(
    lock: &LockFile,
    wf: &LockWorkflow,
    job: &PlannedJob,
    event: &NormalizedEvent,
    origin: &Origin,
) -> Value {
    let repo_name = event.repo.clone().unwrap_or_default();
    let repo_url = match origin {
        Origin::GitHub { .. } => event.payload["repository"]["clone_url"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("https://github.com/{repo_name}.git")),
        Origin::Local {
            repo,
            clone_url_base,
        } => match clone_url_base {
            Some(b) => format!("{}/{repo_name}", b.trim_end_matches('/')),
            None => format!("file://{}", repo.display()),
        },
        Origin::None => String::new(),
    };
    let mut config = json!({
        "workflowName": wf.name,
        "name": job.name,
        "baseJobName": job.base_name,
        "needs": job.job.needs,
        "runsOn": job.runs_on_labels.join(","),
        "event": event_json(event),
        "provider": event_json(event)["provider"],
        "checkout": true,
    });
    if let Some(source) = wf.extra.get("source").or(lock.source.as_ref()) {
        config["source"] = source.clone();
    }
    if !wf.content_hash.is_empty() {
        config["contentHash"] = json!(wf.content_hash);
    }
    // The deps cache key this job may write (src/agent/cache_keys.rs); informational to the agent.
    if let Some(hash) = lock.lockfile_hash.as_ref().filter(|h| !h.is_empty()) {
        config["lockfileHash"] = json!(hash);
    }
    for key in ["steps", "rules", "timeout", "env", "container"] {
        if let Some(v) = job.job.extra.get(key) {
            config[key] = v.clone();
        }
    }
    if let Some(m) = &job.matrix_values {
        config["matrixValues"] = json!(m);
    }
    let git_ref = event
        .source_branch
        .clone()
        .unwrap_or_else(|| event.target_branch.clone());
    let mut body = json!({ "repoUrl": repo_url, "ref": git_ref, "sha": event.sha, "lockFileUrl": "", "jobConfig": config });
    // The agent's cap on the job's log, enforced on our side too (docs/agent-protocol.md,
    // "Limits").
    body["maxLogSizeBytes"] = json!(crate::agent::logs::DEFAULT_MAX_LOG_BYTES);
    // Names only: the secrets themselves are resolved when the job is sent
    // (src/secrets/dispatch.rs), never stored with it.
    let environments =
        crate::secrets::resolve::declared_environments(job.job.extra.get("environments"));
    if !environments.is_empty() {
        body[crate::secrets::dispatch::REQUEST_KEY] = json!({ "environments": environments });
    }
    if let Origin::GitHub {
        routing_key,
        installation_id,
        ..
    } = origin
    {
        // Never the token itself: it is minted when the job is sent (pipeline::credentials).
        let reference = CredentialRef {
            provider: "github".into(),
            routing_key: routing_key.clone(),
            app_id: routing_key.trim_start_matches("github:").to_owned(),
            installation_id: *installation_id,
            repository: repo_name,
            permissions: job_permissions(),
            fork_pull_request: event.is_fork_pr,
        };
        body[DISPATCH_KEY] = reference.to_value();
    }
    body
}
