//! The GitHub REST API as this crate uses it: the only code in `github/` that does I/O.
//!
//! Blocking `ureq`, one agent per `GitHubApi`, a hard total timeout per call so an admin command
//! or the daemon never hangs on GitHub.

use std::{fmt, time::Duration};

use serde::Deserialize;

use super::app_jwt::{app_jwt, AppKey, KeyError};

/// Where GitHub.com serves its REST API; GitHub Enterprise Server uses `https://<host>/api/v3`.
pub const GITHUB_API_URL: &str = "https://api.github.com";
/// The REST version we were written against; GitHub answers older versions differently.
const API_VERSION: &str = "2022-11-28";
/// GitHub refuses requests without a User-Agent (403) and asks for the product's name.
const USER_AGENT: &str = "kici-orchestrator";
/// Total per call (connect, TLS, request, body): long enough for a slow GitHub, short enough
/// that `sources add` reports a dead network instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(15);
/// `GET /app` answers ~2 KB; anything near this is not GitHub.
const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// How much of an unexpected body goes into an error message.
const BODY_PREVIEW_CHARS: usize = 200;

/// A GitHub REST API endpoint (GitHub.com, GitHub Enterprise Server, or a test fake). Clones
/// share one connection pool.
#[derive(Debug, Clone)]
pub struct GitHubApi {
    /// Without a trailing slash, so paths join as `{base}/app`.
    base: String,
    agent: ureq::Agent,
}

/// Who GitHub says the App is (`GET /app`): the source row stores `name` and `slug`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AppIdentity {
    pub id: i64,
    pub name: String,
    pub slug: String,
}

/// How a GitHub API call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GitHubError {
    /// GitHub answered with an error status: carries the status and GitHub's own `message`
    /// field (or the body text). For `GET /app`, 401 means the key is not this App's, or the
    /// token's time window is off (host clock).
    Rejected { status: u16, message: String },
    /// Could not reach it (DNS, refused, TLS, timeout): carries the URL and the transport error.
    Unreachable { url: String, detail: String },
    /// 2xx but not the JSON we expect (a proxy, a wrong base URL).
    BadResponse(String),
}

impl fmt::Display for GitHubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitHubError::Rejected { status, message } => write!(
                f,
                "GitHub rejected the App credentials (HTTP {status}): {message}"
            ),
            GitHubError::Unreachable { url, detail } => {
                write!(f, "GitHub API unreachable at {url}: {detail}")
            }
            GitHubError::BadResponse(detail) => {
                write!(f, "unexpected response from GitHub: {detail}")
            }
        }
    }
}

impl std::error::Error for GitHubError {}

impl GitHubApi {
    /// `base_url` is the API root, e.g. [`GITHUB_API_URL`]; a trailing slash is ignored and an
    /// empty value means GitHub.com.
    pub fn new(base_url: &str) -> GitHubApi {
        // ureq's rustls needs the process-wide provider before its first https call.
        crate::install_crypto_provider();
        let trimmed = base_url.trim().trim_end_matches('/');
        let base = if trimmed.is_empty() {
            GITHUB_API_URL
        } else {
            trimmed
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            // Error statuses carry GitHub's explanation in the body; we want to read it.
            .http_status_as_error(false)
            .user_agent(USER_AGENT)
            .build()
            .new_agent();
        GitHubApi {
            base: base.to_owned(),
            agent,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The shared HTTP agent, for calls that read an answer's headers (`super::checks`).
    pub(crate) fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// `GET {base}/app` authenticated as the App itself (`jwt` from [`app_jwt`]): proves the key
    /// belongs to the App and returns its identity.
    pub fn get_app(&self, jwt: &str) -> Result<AppIdentity, GitHubError> {
        let url = format!("{}/app", self.base);
        let mut response = self
            .agent
            .get(&url)
            .header("Authorization", format!("Bearer {jwt}"))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .call()
            .map_err(|e| {
                crate::metrics::hooks::github(None, None, None);
                GitHubError::Unreachable {
                    url: url.clone(),
                    detail: e.to_string(),
                }
            })?;
        let status = response.status().as_u16();
        rate_limit(status, response.headers());
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string();
        if !(200..300).contains(&status) {
            let message = match &body {
                Ok(text) => rejection_message(text),
                Err(e) => format!("(response body unreadable: {e})"),
            };
            return Err(GitHubError::Rejected { status, message });
        }
        let body = body.map_err(|e| match e {
            // The connection died or stalled mid-body: a network problem, not a wrong answer.
            ureq::Error::Io(_) | ureq::Error::Timeout(_) => GitHubError::Unreachable {
                url: url.clone(),
                detail: e.to_string(),
            },
            other => GitHubError::BadResponse(format!(
                "GET {url} answered HTTP {status} with an unreadable body: {other}"
            )),
        })?;
        serde_json::from_str::<AppIdentity>(&body).map_err(|e| {
            GitHubError::BadResponse(format!(
                "GET {url} answered HTTP {status} but not with a GitHub App ({e}); body starts \
                 {:?}. Is {} the GitHub API root?",
                preview(&body),
                self.base
            ))
        })
    }
}

/// Counts an answered call for `/metrics`, with GitHub's rate-limit headers.
fn rate_limit(status: u16, headers: &ureq::http::HeaderMap) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    crate::metrics::hooks::github(
        Some(status),
        header("x-ratelimit-remaining"),
        header("x-ratelimit-resource"),
    );
}

impl GitHubApi {
    /// One REST call: `auth` is the whole Authorization value (`Bearer <jwt>` or
    /// `token <installation token>`). Any HTTP status is an answer; no answer is `Unreachable`.
    /// Bodies up to 8 MiB (lock files, file lists).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        auth: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), GitHubError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: ureq::Error| GitHubError::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        };
        let result = match (method, body) {
            ("POST", b) => self
                .agent
                .post(&url)
                .header("Authorization", auth)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", API_VERSION)
                .send(b.unwrap_or("").as_bytes()),
            _ => self
                .agent
                .get(&url)
                .header("Authorization", auth)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", API_VERSION)
                .call(),
        };
        let mut response = result.map_err(|e| {
            crate::metrics::hooks::github(None, None, None);
            unreachable(e)
        })?;
        let status = response.status().as_u16();
        rate_limit(status, response.headers());
        let text = response
            .body_mut()
            .with_config()
            .limit(8 * MAX_BODY_BYTES)
            .read_to_string()
            .map_err(unreachable)?;
        Ok((status, text))
    }

    /// `call` that turns a non-2xx answer into `Rejected` with GitHub's message.
    pub fn call_ok(
        &self,
        method: &str,
        path: &str,
        auth: &str,
        body: Option<&str>,
    ) -> Result<String, GitHubError> {
        let (status, text) = self.call(method, path, auth, body)?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(GitHubError::Rejected {
                status,
                message: rejection_message(&text),
            })
        }
    }
}

impl Default for GitHubApi {
    fn default() -> GitHubApi {
        GitHubApi::new(GITHUB_API_URL)
    }
}

/// GitHub's error bodies are `{"message": ..., "documentation_url": ...}`; a proxy's are not.
fn rejection_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned));
    match from_json {
        Some(message) => message,
        None if body.trim().is_empty() => "(empty response body)".to_owned(),
        None => preview(body),
    }
}

fn preview(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(BODY_PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

/// Why App credentials failed the check `sources add` makes before storing them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationError {
    /// The private key cannot sign: nothing was sent to GitHub.
    InvalidKey(KeyError),
    /// GitHub refused the token, could not be reached, or answered nonsense.
    GitHub(GitHubError),
    /// GitHub authenticated the token but reports a different App: the base URL does not point
    /// at the GitHub that issued this App, or something in between is rewriting answers.
    AppIdMismatch { expected: String, got: i64 },
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationError::InvalidKey(e) => write!(f, "invalid App private key: {e}"),
            ValidationError::GitHub(e) => e.fmt(f),
            ValidationError::AppIdMismatch { expected, got } => write!(
                f,
                "GitHub answered for App ID {got}, not for the App ID given ({expected}): check \
                 the App ID and the GitHub API URL"
            ),
        }
    }
}

impl std::error::Error for ValidationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ValidationError::InvalidKey(e) => Some(e),
            ValidationError::GitHub(e) => Some(e),
            ValidationError::AppIdMismatch { .. } => None,
        }
    }
}

/// Proves that `private_key_pem` is a key of App `app_id` by calling `GET /app` as the App
/// (docs/operations.md, "Admin API and tokens"); on success GitHub's name and slug are what gets
/// stored.
pub fn validate_app(
    api: &GitHubApi,
    app_id: &str,
    private_key_pem: &str,
    now_unix: i64,
) -> Result<AppIdentity, ValidationError> {
    let key = AppKey::from_pem(private_key_pem).map_err(ValidationError::InvalidKey)?;
    let identity = api
        .get_app(&app_jwt(&key, app_id, now_unix))
        .map_err(ValidationError::GitHub)?;
    if identity.id.to_string() != app_id {
        return Err(ValidationError::AppIdMismatch {
            expected: app_id.to_owned(),
            got: identity.id,
        });
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_drops_trailing_slashes_and_defaults_to_github_com() {
        assert_eq!(
            GitHubApi::new("http://127.0.0.1:9/").base_url(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            GitHubApi::new("https://ghe.example/api/v3//").base_url(),
            "https://ghe.example/api/v3"
        );
        assert_eq!(GitHubApi::new("").base_url(), "https://api.github.com");
        assert_eq!(GitHubApi::default().base_url(), "https://api.github.com");
    }

    #[test]
    fn rejection_message_prefers_githubs_message_field() {
        let body = r#"{"message":"A JSON web token could not be decoded","documentation_url":"https://docs.github.com/rest"}"#;
        assert_eq!(
            rejection_message(body),
            "A JSON web token could not be decoded"
        );
        assert_eq!(
            rejection_message("<html>502 Bad Gateway</html>\n"),
            "<html>502 Bad Gateway</html>"
        );
        assert_eq!(rejection_message("  "), "(empty response body)");
        let long = "é".repeat(500);
        assert_eq!(
            rejection_message(&long).chars().count(),
            BODY_PREVIEW_CHARS + 1
        );
    }

    #[test]
    fn error_messages_name_the_status_and_the_url() {
        let rejected = GitHubError::Rejected {
            status: 401,
            message: "A JSON web token could not be decoded".into(),
        };
        assert_eq!(
            rejected.to_string(),
            "GitHub rejected the App credentials (HTTP 401): A JSON web token could not be decoded"
        );
        let unreachable = GitHubError::Unreachable {
            url: "http://127.0.0.1:9/app".into(),
            detail: "io: Connection refused".into(),
        };
        assert_eq!(
            unreachable.to_string(),
            "GitHub API unreachable at http://127.0.0.1:9/app: io: Connection refused"
        );
        assert_eq!(
            ValidationError::GitHub(rejected.clone()).to_string(),
            rejected.to_string()
        );
    }
}
