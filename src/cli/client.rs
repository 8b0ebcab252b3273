//! The admin API client (contract: `<url>/api/v1/admin/…`, JSON in and out, Bearer token).
//! One blocking ureq agent with a 30 s global timeout; HTTP error statuses come back as
//! responses so their `{"error": …}` body can be shown. The token goes into the Authorization
//! header and nowhere else: no Debug, no log, no error message carries it.

use std::{fmt, time::Duration};

use serde_json::Value;
use ureq::http::{Method, Request};

use super::{instance, Globals};
use crate::Error;

const API_PREFIX: &str = "/api/v1/admin";
const TIMEOUT: Duration = Duration::from_secs(30);

/// How an admin API call failed.
#[derive(Debug)]
pub enum ApiError {
    /// No HTTP answer at all: connection refused, DNS, TLS, timeout.
    Unreachable { url: String, reason: String },
    /// The orchestrator answered with a non-2xx status; `message` is its `error` field (plus any
    /// validation `details`), or the raw body.
    Status { status: u16, message: String },
    /// A 2xx answer that is not the JSON the contract promises.
    BadResponse { route: String, reason: String },
    /// The request could not be built: a URL without a host, a token with a line break.
    InvalidRequest { url: String, reason: String },
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unreachable { url, reason } => write!(
                f,
                "cannot reach the orchestrator at {url}: {reason} (is it running? set --url or KICI_ADMIN_URL)"
            ),
            ApiError::Status { status, message } => write!(f, "HTTP {status}: {message}"),
            ApiError::BadResponse { route, reason } => {
                write!(f, "unexpected answer from the admin API ({route}): {reason}")
            }
            ApiError::InvalidRequest { url, reason } => write!(
                f,
                "cannot send a request to {url}: {reason} (check --url or KICI_ADMIN_URL, and the token)"
            ),
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        Error::Api(e.to_string())
    }
}

pub struct AdminClient {
    agent: ureq::Agent,
    /// Scheme, host, port and base path, without a trailing slash.
    base_url: String,
    token: String,
}

impl AdminClient {
    /// The client for this command line: token from `--token` or `$KICI_ADMIN_TOKEN`, URL as
    /// `instance::resolve_admin_url` decides.
    pub fn from_globals(globals: &Globals) -> Result<AdminClient, Error> {
        let env = |k: &str| std::env::var(k).ok();
        let token = resolve_token(globals.token.as_deref(), env("KICI_ADMIN_TOKEN").as_deref())?;
        let cwd = std::env::current_dir().ok();
        let base_url = instance::resolve_admin_url(
            globals.url.as_deref(),
            env("KICI_ADMIN_URL").as_deref(),
            globals.instance_dir.as_deref().map(std::path::Path::new),
            cwd.as_deref(),
        )?;
        Ok(AdminClient::new(base_url, token))
    }

    pub fn new(base_url: String, token: String) -> AdminClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        AdminClient {
            agent,
            base_url,
            token,
        }
    }

    /// The orchestrator's URL with its base path, for routes outside the admin API (webhooks).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn get(&self, route: &str) -> Result<Value, ApiError> {
        self.call(Method::GET, route, None)
    }

    pub fn post(&self, route: &str, body: &Value) -> Result<Value, ApiError> {
        self.call(Method::POST, route, Some(body))
    }

    pub fn put(&self, route: &str, body: &Value) -> Result<Value, ApiError> {
        self.call(Method::PUT, route, Some(body))
    }

    pub fn patch(&self, route: &str, body: &Value) -> Result<Value, ApiError> {
        self.call(Method::PATCH, route, Some(body))
    }

    pub fn delete(&self, route: &str) -> Result<Value, ApiError> {
        self.call(Method::DELETE, route, None)
    }

    /// `route` starts with `/` and is relative to `/api/v1/admin`; path segments built from user
    /// input must already be `encode_component`ed.
    fn call(&self, method: Method, route: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        let url = format!("{}{API_PREFIX}{route}", self.base_url);
        let unreachable = |reason: String| ApiError::Unreachable {
            url: self.base_url.clone(),
            reason,
        };
        let invalid = |reason: String| ApiError::InvalidRequest {
            url: self.base_url.clone(),
            reason,
        };
        let failed = |e: ureq::Error| match e {
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => invalid(e.to_string()),
            e => unreachable(e.to_string()),
        };
        let builder = Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json");
        // Two arms because the body types differ (a JSON string, or none at all).
        let sent = match body {
            Some(json) => builder
                .header("Content-Type", "application/json")
                .body(json.to_string())
                .map_err(|e| invalid(e.to_string()))
                .and_then(|req| self.agent.run(req).map_err(failed)),
            None => builder
                .body(())
                .map_err(|e| invalid(e.to_string()))
                .and_then(|req| self.agent.run(req).map_err(failed)),
        };
        let mut response = sent?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| unreachable(format!("reading the answer to {route}: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(ApiError::Status {
                status,
                message: error_message(status, &text),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ApiError::BadResponse {
            route: route.to_owned(),
            reason: format!("not JSON ({e}): {}", excerpt(&text)),
        })
    }
}

/// The array `key` of an answer (`{"sources": [...]}`, `{"tokens": [...]}`).
pub fn array_of(answer: &Value, key: &str, route: &str) -> Result<Vec<Value>, ApiError> {
    match answer.get(key) {
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Err(ApiError::BadResponse {
            route: route.to_owned(),
            reason: format!("no \"{key}\" list in {}", excerpt(&answer.to_string())),
        }),
    }
}

/// The error of an API command run without a token (docs/operations.md, "Admin CLI").
pub const TOKEN_REQUIRED: &str = "--token or KICI_ADMIN_TOKEN is required";

/// `--token`, else `$KICI_ADMIN_TOKEN` (empty counts as unset).
pub fn resolve_token(flag: Option<&str>, env: Option<&str>) -> Result<String, Error> {
    flag.filter(|t| !t.is_empty())
        .or(env.filter(|t| !t.is_empty()))
        .map(str::to_owned)
        .ok_or_else(|| Error::Usage(TOKEN_REQUIRED.into()))
}

/// The message of a non-2xx answer: the body's `error` (each validation `details` entry on a
/// line of its own), else the raw text, else the status's reason phrase.
pub fn error_message(status: u16, body: &str) -> String {
    if let Ok(json) = serde_json::from_str::<Value>(body) {
        if let Some(error) = json.get("error").and_then(Value::as_str) {
            let mut message = error.to_owned();
            for detail in json
                .get("details")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let path = match detail.get("path") {
                    Some(Value::String(p)) => p.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join("."),
                    _ => String::new(),
                };
                let text = detail.get("message").and_then(Value::as_str).unwrap_or("");
                message.push_str(&match path.as_str() {
                    "" => format!("\n  - {text}"),
                    _ => format!("\n  - {path}: {text}"),
                });
            }
            return message;
        }
    }
    match body.trim() {
        "" => ureq::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("(empty body)")
            .to_owned(),
        text => excerpt(text),
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 500;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

pub use crate::http::parse::encode_component;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_flag_then_env_else_the_spec_error() {
        assert_eq!(resolve_token(Some("a"), Some("b")).unwrap(), "a");
        assert_eq!(resolve_token(Some(""), Some("b")).unwrap(), "b");
        assert_eq!(resolve_token(None, Some("b")).unwrap(), "b");
        let e = resolve_token(None, Some("")).unwrap_err();
        assert_eq!(e.to_string(), "--token or KICI_ADMIN_TOKEN is required");
    }

    #[test]
    fn routing_keys_are_encoded_like_encode_uri_component() {
        assert_eq!(encode_component("github:1"), "github%3A1");
        assert_eq!(
            encode_component("generic:my org/x?y"),
            "generic%3Amy%20org%2Fx%3Fy"
        );
        assert_eq!(encode_component("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn error_messages_follow_the_spec() {
        let e = ApiError::Status {
            status: 404,
            message: error_message(404, r#"{"error":"Source not found"}"#),
        };
        assert_eq!(e.to_string(), "HTTP 404: Source not found");
        assert_eq!(error_message(500, "boom\n"), "boom");
        assert_eq!(error_message(502, ""), "Bad Gateway");
        assert_eq!(
            error_message(
                400,
                r#"{"error":"Validation error","details":[{"path":["rateLimitRpm"],"message":"must be positive"},{"path":"name","message":"too long"}]}"#
            ),
            "Validation error\n  - rateLimitRpm: must be positive\n  - name: too long"
        );
        let e = ApiError::Unreachable {
            url: "http://localhost:4000".into(),
            reason: "io: Connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach the orchestrator at http://localhost:4000: io: Connection refused \
             (is it running? set --url or KICI_ADMIN_URL)"
        );
    }

    /// Serves one canned HTTP answer on loopback and hands back the request it received.
    fn one_shot_server(status: &str, body: &str) -> (String, std::thread::JoinHandle<String>) {
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as many body bytes as Content-Length says.
            loop {
                let n = stream.read(&mut buf).expect("read");
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= head_end + 4 + length || n == 0 {
                        break;
                    }
                }
            }
            stream.write_all(answer.as_bytes()).expect("write");
            String::from_utf8_lossy(&request).to_string()
        });
        (url, handle)
    }

    #[test]
    fn requests_carry_method_path_token_and_json_body() {
        let (url, server) = one_shot_server("200 OK", r#"{"routingKey":"github:1","name":"n"}"#);
        let client = AdminClient::new(format!("{url}/ci"), "tok123".into());
        let answer = client
            .patch(
                &format!("/sources/{}", encode_component("github:1")),
                &serde_json::json!({"name": "n"}),
            )
            .expect("200");
        assert_eq!(answer["routingKey"], "github:1");
        let request = server.join().expect("server");
        assert!(
            request.starts_with("PATCH /ci/api/v1/admin/sources/github%3A1 HTTP/1.1\r\n"),
            "{request}"
        );
        let lower = request.to_ascii_lowercase();
        assert!(
            lower.contains("authorization: bearer tok123\r\n"),
            "{request}"
        );
        assert!(
            lower.contains("content-type: application/json\r\n"),
            "{request}"
        );
        assert!(request.ends_with("\r\n\r\n{\"name\":\"n\"}"), "{request}");
    }

    #[test]
    fn error_statuses_become_the_spec_message() {
        let (url, server) = one_shot_server(
            "409 Conflict",
            r#"{"error":"Source with routing key github:1 already exists"}"#,
        );
        let client = AdminClient::new(url, "t".into());
        let e = client.delete("/tokens/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "HTTP 409: Source with routing key github:1 already exists"
        );
        assert!(server
            .join()
            .expect("server")
            .starts_with("DELETE /api/v1/admin/tokens/x "));
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_an_invalid_request_not_an_outage() {
        let client = AdminClient::new("http://127.0.0.1:9".into(), "line\nbreak".into());
        let e = client.get("/tokens").unwrap_err();
        assert!(matches!(e, ApiError::InvalidRequest { .. }), "{e}");
        assert!(!e.to_string().contains("line"), "{e}");
    }

    #[test]
    fn connection_failure_names_the_url_and_never_the_token() {
        // Port 9 on loopback (discard) is closed on any sane test machine.
        let client = AdminClient::new("http://127.0.0.1:9".into(), "sekrit-token".into());
        let e = client.get("/tokens").unwrap_err().to_string();
        assert!(
            e.starts_with("cannot reach the orchestrator at http://127.0.0.1:9: "),
            "{e}"
        );
        assert!(!e.contains("sekrit-token"), "{e}");
    }
}
