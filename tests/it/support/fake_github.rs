//! A fake GitHub REST API on 127.0.0.1 that knows one App and checks App JWTs the way GitHub
//! does: a real HTTP server (the project's own), so the client's TLS-less path, headers, status
//! handling and timeouts are exercised for real.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use data_encoding::BASE64URL_NOPAD;
use kici_orchestrator::http::server::{Handler, Limits, Server, ShutdownHandle};
use kici_orchestrator::http::{Request, Response};
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

/// GitHub's own texts (seen in its 401 bodies), so client code is tested against real wording.
pub const MSG_UNDECODABLE: &str = "A JSON web token could not be decoded";
pub const MSG_EXPIRED: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
pub const MSG_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
pub const MSG_IAT: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
const DOCS_URL: &str = "https://docs.github.com/rest";
/// GitHub's cap on how far ahead `exp` may be.
const MAX_EXP_AHEAD_SECS: i64 = 600;

pub struct FakeGitHub {
    /// `http://127.0.0.1:<port>`: pass to `GitHubApi::new`.
    pub url: String,
    app: Arc<FakeApp>,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

pub(super) struct FakeApp {
    id: i64,
    name: String,
    slug: String,
    public_key_pkcs1_der: Vec<u8>,
    requests: AtomicUsize,
    last_headers: Mutex<Vec<(String, String)>>,
    /// Installation tokens handed out, repository files by (repo, ref, path), and compare results.
    tokens: Mutex<Vec<String>>,
    /// Per token issued: the installation id and the access_tokens request body it answered.
    grants: Mutex<Vec<Grant>>,
    /// When set, access_tokens requests are refused (422) as GitHub does for a repository the
    /// installation cannot reach.
    refuse_tokens: std::sync::atomic::AtomicBool,
    /// How long the tokens it issues live (GitHub: an hour).
    token_lifetime_secs: std::sync::atomic::AtomicI64,
    files: Mutex<std::collections::HashMap<(String, String, String), Vec<u8>>>,
    compares: Mutex<std::collections::HashMap<(String, String, String), Vec<String>>>,
    /// The Checks API (`super::fake_checks`).
    checks: Mutex<super::fake_checks::Checks>,
}

impl FakeGitHub {
    /// Serves `GET /app` for one App. A Bearer JWT that is missing, malformed, not RS256, signed
    /// by another key, or whose `iss` is not this App's ID gets 401 "A JSON web token could not
    /// be decoded"; a past `exp`, an `exp` over 10 minutes ahead, or a future `iat` get GitHub's
    /// messages for those. A request without User-Agent gets GitHub's 403. `iss` is read as a
    /// number (JSON number or decimal string), as GitHub documents it.
    pub fn start(app_id: i64, name: &str, slug: &str, public_key_pkcs1_der: Vec<u8>) -> FakeGitHub {
        let limits = Limits {
            drain_timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), limits)
            .expect("bind fake GitHub on 127.0.0.1");
        let url = format!("http://{}", server.local_addr());
        let stop = server.shutdown_handle();
        let app = Arc::new(FakeApp {
            id: app_id,
            name: name.to_owned(),
            slug: slug.to_owned(),
            public_key_pkcs1_der,
            requests: AtomicUsize::new(0),
            last_headers: Mutex::new(Vec::new()),
            tokens: Mutex::default(),
            grants: Mutex::default(),
            refuse_tokens: Default::default(),
            token_lifetime_secs: std::sync::atomic::AtomicI64::new(3600),
            files: Mutex::default(),
            compares: Mutex::default(),
            checks: Mutex::default(),
        });
        let handler: Arc<dyn Handler> = app.clone();
        let thread = thread::Builder::new()
            .name("fake-github".into())
            .spawn(move || server.run(handler))
            .expect("start fake GitHub thread");
        FakeGitHub {
            url,
            app,
            stop,
            thread: Some(thread),
        }
    }

    /// The Checks API side (`super::fake_checks::FakeChecks`).
    pub fn checks(&self) -> super::fake_checks::FakeChecks<'_> {
        super::fake_checks::FakeChecks { app: &self.app }
    }

    /// How many `/app` calls it served (accepted or not).
    pub fn requests(&self) -> usize {
        self.app.requests.load(Ordering::SeqCst)
    }

    /// Serves `content` as `path` of `repo` at `git_ref` through the Contents API.
    pub fn put_file(&self, repo: &str, git_ref: &str, path: &str, content: &[u8]) {
        let key = (repo.to_owned(), git_ref.to_owned(), path.to_owned());
        self.app.files.lock().unwrap().insert(key, content.to_vec());
    }

    /// What `GET /repos/:repo/compare/:base...:head` lists as changed.
    pub fn set_compare(&self, repo: &str, base: &str, head: &str, files: &[&str]) {
        let key = (repo.to_owned(), base.to_owned(), head.to_owned());
        self.app
            .compares
            .lock()
            .unwrap()
            .insert(key, files.iter().map(|f| f.to_string()).collect());
    }

    /// Installation tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.app.tokens.lock().unwrap().len()
    }

    /// Every installation token issued, with what was asked for, oldest first.
    pub fn grants(&self) -> Vec<Grant> {
        self.app.grants.lock().unwrap().clone()
    }

    /// What `token` was issued for (`None`: not issued by this fake).
    pub fn grant_of(&self, token: &str) -> Option<Grant> {
        self.grants().into_iter().find(|g| g.token == token)
    }

    /// Refuse (422) or grant installation token requests from now on.
    pub fn refuse_tokens(&self, refuse: bool) {
        self.app.refuse_tokens.store(refuse, Ordering::SeqCst);
    }

    /// Tokens issued from now on expire this many seconds after they are issued.
    pub fn set_token_lifetime(&self, secs: i64) {
        self.app.token_lifetime_secs.store(secs, Ordering::SeqCst);
    }

    /// Headers of the latest `/app` call, names lower-cased.
    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.app.last_headers.lock().unwrap().clone()
    }
}

/// An installation token the fake issued.
#[derive(Debug, Clone)]
pub struct Grant {
    pub token: String,
    pub installation: String,
    /// The request body as sent (`Value::Null` when it was empty or not JSON).
    pub request: Value,
}

impl Grant {
    /// Whether this token may read `owner/name`: GitHub limits a token to the `repositories`
    /// (names) or `repository_ids` it was asked for; without either, every repository of the
    /// installation.
    pub(super) fn covers(&self, full_name: &str) -> bool {
        let name = full_name.rsplit('/').next().unwrap_or(full_name);
        match self.request["repositories"].as_array() {
            Some(names) => names.iter().any(|n| n == name),
            None => self.request.get("repository_ids").is_none(),
        }
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Handler for FakeApp {
    fn handle(&self, req: &Request) -> Response {
        if super::fake_checks::is_checks_call(req) {
            return self.checks_call(req);
        }
        if req.path.starts_with("/app/installations/")
            && req.path.ends_with("/access_tokens")
            && req.method == "POST"
        {
            return self.access_token(req);
        }
        if req.path.starts_with("/repos/") && req.method == "GET" {
            return self.repos(req);
        }
        if req.method != "GET" || req.path != "/app" {
            return github_error(404, "Not Found");
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        *self.last_headers.lock().unwrap() = req.headers.clone();
        if req.header("user-agent").is_none_or(str::is_empty) {
            // GitHub answers this one in plain text, not JSON.
            return Response {
                status: 403,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                body: b"Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.\n".to_vec(),
                file: None,
            };
        }
        let token = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        match token.map(|t| self.check_jwt(t, now_unix())) {
            Some(Ok(())) => Response::json(
                200,
                &json!({
                    "id": self.id,
                    "slug": self.slug,
                    "node_id": "A_kwDOBfake",
                    "client_id": format!("Iv23fake{}", self.id),
                    "owner": {"login": "kici-test", "id": 1, "type": "Organization"},
                    "name": self.name,
                    "description": "",
                    "external_url": "https://kici.test",
                    "html_url": format!("https://github.com/apps/{}", self.slug),
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                    "permissions": {"checks": "write", "contents": "read", "metadata": "read"},
                    "events": ["check_run", "pull_request", "push"],
                    "installations_count": 1
                }),
            ),
            Some(Err(message)) => github_error(401, message),
            None => github_error(401, MSG_UNDECODABLE),
        }
    }
}

impl FakeApp {
    /// The Checks API's state.
    pub(super) fn checks(&self) -> std::sync::MutexGuard<'_, super::fake_checks::Checks> {
        self.checks.lock().unwrap()
    }

    /// The grant of an installation token this fake issued (from `Authorization: token …`).
    pub(super) fn grant_for(&self, req: &Request) -> Option<Grant> {
        let token = req.header("authorization")?.strip_prefix("token ")?;
        self.grants
            .lock()
            .unwrap()
            .iter()
            .find(|g| g.token == token)
            .cloned()
    }

    /// `POST /app/installations/:id/access_tokens` as the App (JWT) → a token valid for an hour.
    fn access_token(&self, req: &Request) -> Response {
        let jwt = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        match jwt.map(|t| self.check_jwt(t, now_unix())) {
            Some(Ok(())) if self.refuse_tokens.load(Ordering::SeqCst) => github_error(
                422,
                "There is at least one repository that does not exist or is not accessible to the parent installation.",
            ),
            Some(Ok(())) => {
                let mut b = [0u8; 16];
                getrandom::fill(&mut b).unwrap();
                let token = format!("ghs_{}", kici_orchestrator::crypto::hex(&b));
                self.tokens.lock().unwrap().push(token.clone());
                let installation = req
                    .path
                    .trim_start_matches("/app/installations/")
                    .trim_end_matches("/access_tokens")
                    .to_owned();
                self.grants.lock().unwrap().push(Grant {
                    token: token.clone(),
                    installation,
                    request: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
                });
                let lifetime = self.token_lifetime_secs.load(Ordering::SeqCst);
                let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(lifetime);
                Response::json(
                    201,
                    &json!({"token": token, "expires_at": expires.to_string(), "permissions": {"contents": "read"}}),
                )
            }
            Some(Err(m)) => github_error(401, m),
            None => github_error(401, MSG_UNDECODABLE),
        }
    }

    /// Contents, compare and PR files, for an installation token this fake issued.
    fn repos(&self, req: &Request) -> Response {
        let token = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("token "));
        if !token.is_some_and(|t| self.tokens.lock().unwrap().iter().any(|x| x == t)) {
            return github_error(401, "Bad credentials");
        }
        let parts: Vec<&str> = req.path.trim_start_matches('/').splitn(5, '/').collect();
        if let ["repos", owner, name, ..] = parts.as_slice() {
            let grants = self.grants.lock().unwrap();
            let grant = grants.iter().find(|g| Some(g.token.as_str()) == token);
            if grant.is_some_and(|g| !g.covers(&format!("{owner}/{name}"))) {
                // What GitHub answers for a repository the token does not cover.
                return github_error(404, "Not Found");
            }
        }
        let query = req.query_pairs();
        match parts.as_slice() {
            ["repos", owner, name, "contents", path] => {
                let git_ref = query
                    .iter()
                    .find(|(k, _)| k == "ref")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let key = (format!("{owner}/{name}"), git_ref, path.to_string());
                match self.files.lock().unwrap().get(&key) {
                    Some(bytes) => {
                        let encoded = data_encoding::BASE64.encode(bytes);
                        let wrapped: Vec<String> = encoded
                            .as_bytes()
                            .chunks(60)
                            .map(|c| String::from_utf8_lossy(c).into_owned())
                            .collect();
                        Response::json(
                            200,
                            &json!({"type": "file", "encoding": "base64", "path": path, "content": wrapped.join("\n")}),
                        )
                    }
                    None => github_error(404, "Not Found"),
                }
            }
            ["repos", owner, name, "compare", range] => {
                let (base, head) = range.split_once("...").unwrap_or((range, ""));
                let key = (format!("{owner}/{name}"), base.to_owned(), head.to_owned());
                match self.compares.lock().unwrap().get(&key) {
                    Some(files) => {
                        let list: Vec<Value> = files
                            .iter()
                            .map(|f| json!({"filename": f, "status": "modified"}))
                            .collect();
                        Response::json(200, &json!({"status": "ahead", "files": list}))
                    }
                    None => github_error(404, "Not Found"),
                }
            }
            _ => github_error(404, "Not Found"),
        }
    }

    fn check_jwt(&self, token: &str, now: i64) -> Result<(), &'static str> {
        let parts: Vec<&str> = token.split('.').collect();
        let [header_b64, claims_b64, signature_b64] = parts[..] else {
            return Err(MSG_UNDECODABLE);
        };
        let header = decode_json(header_b64).ok_or(MSG_UNDECODABLE)?;
        if header["alg"] != "RS256" {
            return Err(MSG_UNDECODABLE);
        }
        let claims = decode_json(claims_b64).ok_or(MSG_UNDECODABLE)?;
        let iss = match &claims["iss"] {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        if iss != Some(self.id) {
            return Err(MSG_UNDECODABLE);
        }
        let signature = BASE64URL_NOPAD
            .decode(signature_b64.as_bytes())
            .map_err(|_| MSG_UNDECODABLE)?;
        let signed = format!("{header_b64}.{claims_b64}");
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_key_pkcs1_der)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| MSG_UNDECODABLE)?;
        match claims["exp"].as_i64() {
            Some(exp) if exp > now + MAX_EXP_AHEAD_SECS => return Err(MSG_EXP_TOO_FAR),
            Some(exp) if exp > now => {}
            _ => return Err(MSG_EXPIRED),
        }
        match claims["iat"].as_i64() {
            Some(iat) if iat <= now => Ok(()),
            _ => Err(MSG_IAT),
        }
    }
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = BASE64URL_NOPAD.decode(part.as_bytes()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(super) fn github_error(status: u16, message: &str) -> Response {
    Response::json(
        status,
        &json!({ "message": message, "documentation_url": DOCS_URL }),
    )
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Runs the `openssl` CLI in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An RSA App key pair made by the `openssl` CLI: (private key PEM in PKCS#1, GitHub's download
/// format; public key as PKCS#1 RSAPublicKey DER, what ring verifies with).
pub fn rsa_key_pair() -> (String, Vec<u8>) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "kici-fake-github-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir for the key pair");
    let openssl = |args: &[&str]| openssl(&dir, args);
    // OpenSSL 3 writes PKCS#8 unless told -traditional.
    openssl(&["genrsa", "-traditional", "-out", "app.pem", "2048"]);
    openssl(&[
        "rsa",
        "-in",
        "app.pem",
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        "app.pub.der",
    ]);
    let private_pem = std::fs::read_to_string(dir.join("app.pem")).expect("private key");
    let public_der = std::fs::read(dir.join("app.pub.der")).expect("public key");
    let _ = std::fs::remove_dir_all(&dir);
    (private_pem, public_der)
}
