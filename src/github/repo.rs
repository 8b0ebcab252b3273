//! Reading repositories as a GitHub App installation (docs/architecture.md, "Lock file"):
//! installation tokens (App JWT → `POST /app/installations/:id/access_tokens`, each scoped to one
//! repository and the permissions asked for, cached while valid for at least 15 more minutes), the
//! lock file through the Contents API, and changed files (compare for pushes, the PR files list for
//! pull requests, capped at 300 as the reference does).

use std::{collections::BTreeMap, collections::HashMap, sync::Mutex};

use data_encoding::BASE64;
use serde_json::{json, Value};

use super::{app_jwt, AppKey, GitHubApi, GitHubError};

/// A cached token is handed out only while it stays valid this much longer: a job's agent clones
/// with it right after dispatch, and a fetch or submodule clone a few minutes later must still
/// work (tokens live an hour, so a cached one serves for its first 45 minutes).
pub const MIN_VALIDITY_SECS: i64 = 15 * 60;
/// The reference fetches at most this many changed files.
pub const MAX_CHANGED_FILES: usize = 300;

/// What an installation token may do: the one repository (its name without the owner, as the
/// access_tokens endpoint takes it) and the permissions (`contents` → `read`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenScope {
    pub repository: String,
    pub permissions: BTreeMap<String, String>,
}

impl TokenScope {
    /// Read access to the contents of `full_name` (`owner/name`): what cloning and reading the
    /// lock file need.
    pub fn contents_read(full_name: &str) -> TokenScope {
        TokenScope {
            repository: repo_part(full_name).to_owned(),
            permissions: BTreeMap::from([("contents".to_owned(), "read".to_owned())]),
        }
    }

    /// The `POST /app/installations/:id/access_tokens` body.
    pub fn request_body(&self) -> Value {
        json!({ "repositories": [self.repository], "permissions": self.permissions })
    }
}

/// `name` of `owner/name` (the whole text when there is no owner).
pub fn repo_part(full_name: &str) -> &str {
    full_name.rsplit_once('/').map_or(full_name, |(_, n)| n)
}

type CacheKey = (String, u64, TokenScope);

#[derive(Default)]
pub struct InstallationTokens {
    cache: Mutex<HashMap<CacheKey, (String, i64)>>,
}

fn bad(detail: String) -> GitHubError {
    GitHubError::BadResponse(detail)
}

/// Why no installation token could be had: the App's private key (missing or unusable: the
/// operator's to fix), GitHub's answer to the request (unreachable, or the App lacks access), or
/// an answer that is not a token.
#[derive(Debug)]
pub enum TokenError {
    /// The private key could not be read or parsed; the message says which and how to fix it.
    Key(String),
    /// `POST /app/installations/:id/access_tokens` failed; `asked` names the token (repository,
    /// permissions, installation and App).
    Api { asked: String, source: GitHubError },
    /// GitHub answered 2xx without a usable token.
    BadAnswer(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Key(m) | TokenError::BadAnswer(m) => f.write_str(m),
            TokenError::Api { asked, source } => write!(f, "{asked}: {source}"),
        }
    }
}

impl std::error::Error for TokenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenError::Api { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl InstallationTokens {
    /// A token for `installation_id` of App `app_id` limited to `scope` (from the cache while it
    /// stays valid for [`MIN_VALIDITY_SECS`]). `key` is only called on a cache miss: the App's
    /// private key is read and parsed only when a token must be minted.
    pub fn get(
        &self,
        api: &GitHubApi,
        app_id: &str,
        key: impl FnOnce() -> Result<AppKey, String>,
        installation_id: u64,
        scope: &TokenScope,
        now_unix: i64,
    ) -> Result<String, TokenError> {
        let cache_key = (app_id.to_owned(), installation_id, scope.clone());
        if let Some((token, expires)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
        {
            if *expires - MIN_VALIDITY_SECS >= now_unix {
                return Ok(token.clone());
            }
        }
        let jwt = app_jwt(&key().map_err(TokenError::Key)?, app_id, now_unix);
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let text = api
            .call_ok(
                "POST",
                &path,
                &format!("Bearer {jwt}"),
                Some(&scope.request_body().to_string()),
            )
            .map_err(|source| TokenError::Api {
                asked: format!(
                    "installation token for {} ({}) in installation {installation_id} of App {app_id}",
                    scope.repository,
                    permissions_text(&scope.permissions)
                ),
                source,
            })?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| TokenError::BadAnswer(format!("POST {path}: not JSON ({e})")))?;
        let token = v["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError::BadAnswer(format!("POST {path}: no token in the answer")))?
            .to_owned();
        let expires = v["expires_at"]
            .as_str()
            .and_then(|e| e.parse::<jiff::Timestamp>().ok())
            .map_or(now_unix + 3600, |t| t.as_second());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Keys now include the repository: drop what can no longer be handed out, so the cache
        // stays as small as the set of repositories active in the last hour.
        cache.retain(|_, (_, exp)| *exp - MIN_VALIDITY_SECS >= now_unix);
        cache.insert(cache_key, (token.clone(), expires));
        Ok(token)
    }
}

impl InstallationTokens {
    /// Drops `token` from the cache (GitHub answered 401 for it: revoked before its expiry), so
    /// the next request mints a fresh one.
    pub fn forget(&self, token: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (t, _)| t != token);
    }

    /// Drops every cached token of `installation_id` (its permissions changed: a token minted
    /// before carries the old ones until it expires).
    pub fn forget_installation(&self, installation_id: u64) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, id, _), _| *id != installation_id);
    }
}

/// `contents:read, pull_requests:read` (for messages).
pub fn permissions_text(permissions: &BTreeMap<String, String>) -> String {
    permissions
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(", ")
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

    #[test]
    fn a_token_request_names_one_repository_and_its_permissions() {
        let scope = TokenScope::contents_read("acme/app");
        assert_eq!(scope.repository, "app");
        assert_eq!(
            scope.request_body(),
            serde_json::json!({"repositories": ["app"], "permissions": {"contents": "read"}})
        );
        assert_eq!(repo_part("solo"), "solo");
        assert_eq!(permissions_text(&scope.permissions), "contents:read");
    }
}
