//! Helpers for webhook tests: signing, posting, and creating sources through the admin API.

use serde_json::{json, Value};

use super::daemon::{request, Daemon, HttpResponse};

pub fn sign(secret: &str, body: &[u8]) -> String {
    kici_orchestrator::crypto::hex(&kici_orchestrator::crypto::hmac_sha256(
        secret.as_bytes(),
        body,
    ))
}

pub fn post(d: &Daemon, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    request(d.addr, "POST", path, headers, body)
}

pub fn admin(d: &Daemon, token: &str, method: &str, path: &str, body: Value) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let body = body.to_string();
    request(
        d.addr,
        method,
        &format!("/api/v1/admin{path}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

/// Creates a generic source in org `org`; returns its row.
pub fn generic_source(d: &Daemon, token: &str, org: &str, fields: Value) -> Value {
    let mut body = json!({ "orgId": org });
    for (k, v) in fields.as_object().expect("object") {
        body[k] = v.clone();
    }
    let r = admin(d, token, "POST", "/generic-sources", body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["source"].clone()
}

/// Creates a GitHub App source named `name` for App `app_id` with webhook secret `secret`,
/// asserting the admin API answers 201.
pub fn github_source(
    d: &Daemon,
    token: &str,
    name: &str,
    app_id: &str,
    key_pem: &str,
    secret: &str,
) {
    let r = admin(
        d,
        token,
        "POST",
        "/sources",
        json!({"provider": "github", "name": name, "appId": app_id, "privateKey": key_pem,
               "webhookSecret": secret}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

/// The body of a GitHub push of `after` (from `before`) to `branch` of `repo` ("owner/name"),
/// as App installation 42.
pub fn github_push_body(repo: &str, branch: &str, before: &str, after: &str) -> String {
    let (owner, name) = repo.split_once('/').expect("owner/name");
    json!({
        "ref": format!("refs/heads/{branch}"), "before": before, "after": after,
        "repository": {"full_name": repo, "name": name, "owner": {"login": owner},
                       "default_branch": "main", "clone_url": format!("https://github.example/{repo}.git")},
        "installation": {"id": 42}, "sender": {"login": "dev", "id": 9},
        "head_commit": {"id": after, "message": "change"},
    })
    .to_string()
}

/// Posts `body` as GitHub push delivery `delivery` for App `app_id`, signed with `secret`, plus
/// `extra` headers; returns the answer and the signature header sent.
pub fn post_github_push(
    d: &Daemon,
    secret: &str,
    app_id: &str,
    delivery: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> (HttpResponse, String) {
    post_github_event(d, secret, app_id, "push", delivery, body, extra)
}

/// A signed GitHub App delivery of `event` for App `app_id`; returns the response and the
/// signature header sent.
pub fn post_github_event(
    d: &Daemon,
    secret: &str,
    app_id: &str,
    event: &str,
    delivery: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> (HttpResponse, String) {
    let sig = format!("sha256={}", sign(secret, body.as_bytes()));
    let mut headers = vec![
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", delivery),
        ("X-GitHub-Hook-Installation-Target-ID", app_id),
        ("X-Hub-Signature-256", &sig),
        ("Content-Type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    let r = post(d, "/webhook/acme/github", &headers, body.as_bytes());
    (r, sig)
}
