//! The GitHub Checks API as the check reporter uses it (docs/check-runs.md, "The reporter"):
//! create a check run (`POST /repos/{owner}/{repo}/check-runs`), update one
//! (`PATCH /repos/{owner}/{repo}/check-runs/{id}`) and list a commit's
//! (`GET /repos/{owner}/{repo}/commits/{ref}/check-runs`), with an installation token. Every
//! answer comes back with the headers the retry policy reads (`crate::checks::retry`).

use serde_json::Value;

use super::{GitHubApi, GitHubError};
use crate::checks::retry::Answer;

const API_VERSION: &str = "2022-11-28";
/// A check-run answer is a few KB; a list of a commit's check runs (100 a page) stays well under.
const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// An answer with its body, when GitHub answered at all.
#[derive(Debug, Clone)]
pub struct Reply {
    pub answer: Answer,
    pub body: String,
}

impl Reply {
    /// The check run's id in a create's answer.
    pub fn check_run_id(&self) -> Option<i64> {
        serde_json::from_str::<Value>(&self.body)
            .ok()?
            .get("id")?
            .as_i64()
    }
}

fn send(
    api: &GitHubApi,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<Reply, GitHubError> {
    let url = format!("{}{path}", api.base_url());
    let unreachable = |e: ureq::Error| GitHubError::Unreachable {
        url: url.clone(),
        detail: e.to_string(),
    };
    let auth = format!("token {token}");
    let agent = api.agent();
    let payload = body.map(Value::to_string).unwrap_or_default();
    let result = match method {
        "POST" => agent
            .post(&url)
            .header("Authorization", &auth)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header("Content-Type", "application/json")
            .send(payload.as_bytes()),
        "PATCH" => agent
            .patch(&url)
            .header("Authorization", &auth)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header("Content-Type", "application/json")
            .send(payload.as_bytes()),
        _ => agent
            .get(&url)
            .header("Authorization", &auth)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .call(),
    };
    let mut response = result.map_err(unreachable)?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut answer = Answer {
        status: response.status().as_u16(),
        message: String::new(),
        retry_after: header("retry-after"),
        ratelimit_remaining: header("x-ratelimit-remaining"),
        ratelimit_reset: header("x-ratelimit-reset"),
    };
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_string()
        .map_err(unreachable)?;
    if !(200..300).contains(&answer.status) {
        answer.message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(200).collect());
    }
    Ok(Reply { answer, body: text })
}

/// Creates a check run on `head_sha` of `repo` (`owner/name`); `body` as rendered by
/// `crate::checks::render::CheckState::body`.
pub fn create(
    api: &GitHubApi,
    token: &str,
    repo: &str,
    head_sha: &str,
    body: &Value,
) -> Result<Reply, GitHubError> {
    let mut body = body.clone();
    body["head_sha"] = Value::String(head_sha.to_owned());
    send(
        api,
        "POST",
        &format!("/repos/{repo}/check-runs"),
        token,
        Some(&body),
    )
}

/// Updates check run `id` of `repo`.
pub fn update(
    api: &GitHubApi,
    token: &str,
    repo: &str,
    id: i64,
    body: &Value,
) -> Result<Reply, GitHubError> {
    send(
        api,
        "PATCH",
        &format!("/repos/{repo}/check-runs/{id}"),
        token,
        Some(body),
    )
}

/// The check runs of a commit (`git_ref`: a SHA, branch or tag), first 100.
pub fn list_for_ref(
    api: &GitHubApi,
    token: &str,
    repo: &str,
    git_ref: &str,
) -> Result<Reply, GitHubError> {
    send(
        api,
        "GET",
        &format!(
            "/repos/{repo}/commits/{}/check-runs?per_page=100",
            crate::http::parse::encode_component(git_ref)
        ),
        token,
        None,
    )
}
