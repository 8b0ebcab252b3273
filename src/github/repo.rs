//! Reading repositories as a GitHub App installation (spec-runtime.md §3.2–§3.3): installation
//! tokens (App JWT → `POST /app/installations/:id/access_tokens`, cached until five minutes
//! before they expire), the lock file through the Contents API, and changed files (compare for
//! pushes, the PR files list for pull requests, capped at 300 as the reference does).

use std::{collections::HashMap, sync::Mutex};

use data_encoding::BASE64;
use serde_json::Value;

use super::{app_jwt, AppKey, GitHubApi, GitHubError};

/// Refresh a cached token this long before GitHub's expiry.
const REFRESH_BEFORE_SECS: i64 = 300;
/// The reference fetches at most this many changed files.
pub const MAX_CHANGED_FILES: usize = 300;

#[derive(Default)]
pub struct InstallationTokens {
    cache: Mutex<HashMap<(String, u64), (String, i64)>>,
}

fn bad(detail: String) -> GitHubError {
    GitHubError::BadResponse(detail)
}

impl InstallationTokens {
    /// A token for `installation_id` of App `app_id` (from the cache while fresh).
    /// `key` is only called on a cache miss: the App's private key is read and parsed only when
    /// a token must be minted.
    pub fn get(
        &self,
        api: &GitHubApi,
        app_id: &str,
        key: impl FnOnce() -> Result<AppKey, String>,
        installation_id: u64,
        now_unix: i64,
    ) -> Result<String, String> {
        let cache_key = (app_id.to_owned(), installation_id);
        if let Some((token, expires)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
        {
            if *expires - REFRESH_BEFORE_SECS > now_unix {
                return Ok(token.clone());
            }
        }
        let jwt = app_jwt(&key()?, app_id, now_unix);
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let text = api
            .call_ok("POST", &path, &format!("Bearer {jwt}"), Some("{}"))
            .map_err(|e| e.to_string())?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("POST {path}: not JSON ({e})"))?;
        let token = v["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("POST {path}: no token in the answer"))?
            .to_owned();
        let expires = v["expires_at"]
            .as_str()
            .and_then(|e| e.parse::<jiff::Timestamp>().ok())
            .map_or(now_unix + 3600, |t| t.as_second());
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cache_key, (token.clone(), expires));
        Ok(token)
    }
}

fn encode_path(path: &str) -> String {
    path.split('/')
        .map(crate::http::parse::encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

/// A file's bytes at `git_ref`; `None` when it does not exist (or is a folder).
pub fn file_at(
    api: &GitHubApi,
    token: &str,
    repo: &str,
    path: &str,
    git_ref: &str,
) -> Result<Option<Vec<u8>>, GitHubError> {
    let route = format!(
        "/repos/{repo}/contents/{}?ref={}",
        encode_path(path),
        crate::http::parse::encode_component(git_ref)
    );
    let (status, text) = api.call("GET", &route, &format!("token {token}"), None)?;
    match status {
        404 => return Ok(None),
        s if !(200..300).contains(&s) => {
            return Err(GitHubError::Rejected {
                status,
                message: text.chars().take(200).collect(),
            })
        }
        _ => {}
    }
    let v: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("GET {route}: not JSON ({e})")))?;
    if v.is_array() || v["type"].as_str().is_some_and(|t| t != "file") {
        return Ok(None);
    }
    let content: String = v["content"]
        .as_str()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    BASE64
        .decode(content.as_bytes())
        .map(Some)
        .map_err(|e| bad(format!("GET {route}: content is not base64 ({e})")))
}

fn filenames(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|files| {
            files
                .iter()
                .filter_map(|f| f["filename"].as_str().map(str::to_owned))
                .take(MAX_CHANGED_FILES)
                .collect()
        })
        .unwrap_or_default()
}

/// Files changed between two commits (`GET /repos/:repo/compare/:base...:head`).
pub fn compare_files(
    api: &GitHubApi,
    token: &str,
    repo: &str,
    base: &str,
    head: &str,
) -> Result<Vec<String>, GitHubError> {
    let route = format!("/repos/{repo}/compare/{base}...{head}");
    let text = api.call_ok("GET", &route, &format!("token {token}"), None)?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("GET {route}: not JSON ({e})")))?;
    Ok(filenames(&v["files"]))
}

/// Files of a pull request (`GET /repos/:repo/pulls/:n/files`, first 300).
pub fn pr_files(
    api: &GitHubApi,
    token: &str,
    repo: &str,
    number: u64,
) -> Result<Vec<String>, GitHubError> {
    let route = format!("/repos/{repo}/pulls/{number}/files?per_page=100");
    let text = api.call_ok("GET", &route, &format!("token {token}"), None)?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("GET {route}: not JSON ({e})")))?;
    Ok(filenames(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_lists() {
        assert_eq!(encode_path(".kici/kici.lock.json"), ".kici/kici.lock.json");
        assert_eq!(encode_path("a b/c#d"), "a%20b/c%23d");
        let v = serde_json::json!([{"filename": "a"}, {"filename": "b"}, {"x": 1}]);
        assert_eq!(filenames(&v), ["a", "b"]);
        let many: Vec<Value> = (0..400)
            .map(|i| serde_json::json!({"filename": i.to_string()}))
            .collect();
        assert_eq!(filenames(&Value::Array(many)).len(), MAX_CHANGED_FILES);
    }
}
