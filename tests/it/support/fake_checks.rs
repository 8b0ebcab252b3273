//! The fake GitHub's Checks API (`super::fake_github`): create
//! (`POST /repos/{o}/{r}/check-runs`), update (`PATCH /repos/{o}/{r}/check-runs/{id}`) and list
//! for a ref (`GET /repos/{o}/{r}/commits/{ref}/check-runs`), each checked as GitHub does: an
//! installation token this fake issued, covering the repository and granted `checks: write`
//! (else 403 "Resource not accessible by integration"), a valid body (else 422). Tests script
//! answers: 5xx, rate limits with GitHub's headers, or a missing permission.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use kici_orchestrator::http::{Request, Response};
use serde_json::{json, Value};

use super::fake_github::{github_error, FakeApp};

/// What GitHub says when a token lacks a permission.
pub const MSG_NOT_ACCESSIBLE: &str = "Resource not accessible by integration";
/// GitHub's secondary rate limit message.
pub const MSG_SECONDARY: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.";

/// One check run as the fake holds it, with every state it was in (status, conclusion), in the
/// order the reports arrived.
#[derive(Debug, Clone)]
pub struct FakeCheckRun {
    pub id: i64,
    pub repo: String,
    pub head_sha: String,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub external_id: Option<String>,
    pub details_url: Option<String>,
    pub title: String,
    pub summary: String,
    pub history: Vec<(String, Option<String>)>,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub message: String,
}

impl Scripted {
    pub fn server_error() -> Scripted {
        Scripted {
            status: 500,
            headers: vec![],
            message: "Server Error".into(),
        }
    }

    /// GitHub's secondary rate limit: 403 with `Retry-After`.
    pub fn secondary_limit(retry_after_secs: u64) -> Scripted {
        Scripted {
            status: 403,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            message: MSG_SECONDARY.into(),
        }
    }
}

#[derive(Default)]
pub struct Checks {
    runs: Vec<FakeCheckRun>,
    next_id: i64,
    /// Calls to the Checks API (answered in any way).
    requests: usize,
    /// Answers served before any real one, in order.
    script: VecDeque<Scripted>,
    /// Until then, every call gets this answer.
    outage: Option<(Instant, Scripted)>,
    /// Every call gets 403 "Resource not accessible by integration".
    deny: bool,
    /// When each call came and the status it got.
    answered: Vec<(Instant, u16)>,
}

pub fn is_checks_call(req: &Request) -> bool {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    matches!(
        (req.method.as_str(), parts.as_slice()),
        ("POST", ["repos", _, _, "check-runs"])
            | ("PATCH", ["repos", _, _, "check-runs", _])
            | ("GET", ["repos", _, _, "commits", _, "check-runs"])
    )
}

/// The test's handle on the Checks API side.
pub struct FakeChecks<'a> {
    pub(super) app: &'a FakeApp,
}

impl FakeChecks<'_> {
    /// Every check run of `repo`, oldest first.
    pub fn runs(&self, repo: &str) -> Vec<FakeCheckRun> {
        let c = self.app.checks();
        c.runs.iter().filter(|r| r.repo == repo).cloned().collect()
    }

    /// Checks API calls so far.
    pub fn requests(&self) -> usize {
        self.app.checks().requests
    }

    /// Serve these answers to the next calls, one each.
    pub fn script(&self, answers: Vec<Scripted>) {
        self.app.checks().script.extend(answers);
    }

    /// Answer every call with `answer` for `dur`.
    pub fn outage(&self, dur: Duration, answer: Scripted) {
        self.app.checks().outage = Some((Instant::now() + dur, answer));
    }

    /// When each call came and the status it was answered with, in order.
    pub fn answered(&self) -> Vec<(Instant, u16)> {
        self.app.checks().answered.clone()
    }

    /// Whether unanswered scripted answers remain.
    pub fn scripted_left(&self) -> usize {
        self.app.checks().script.len()
    }

    /// Refuse every call as for an App without `checks: write`.
    pub fn deny(&self, deny: bool) {
        self.app.checks().deny = deny;
    }
}

fn scripted_response(s: &Scripted) -> Response {
    let mut r = github_error(s.status, &s.message);
    r.headers.extend(s.headers.iter().cloned());
    r
}

const STATUSES: [&str; 3] = ["queued", "in_progress", "completed"];
const CONCLUSIONS: [&str; 8] = [
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
];

/// GitHub's 422 reasons for a body, if any.
fn invalid(body: &Value, create: bool) -> Option<String> {
    if !body.is_object() {
        return Some("Problems parsing JSON".into());
    }
    if create {
        if body["name"].as_str().is_none_or(str::is_empty) {
            return Some("name wasn't supplied.".into());
        }
        let sha = body["head_sha"].as_str().unwrap_or("");
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some("No commit found for SHA".into());
        }
    }
    if let Some(s) = body.get("status") {
        if !s.as_str().is_some_and(|s| STATUSES.contains(&s)) {
            return Some(format!(
                "Invalid request.\n\n{s} is not a member of {STATUSES:?}."
            ));
        }
    }
    if let Some(c) = body.get("conclusion") {
        if !c.as_str().is_some_and(|c| CONCLUSIONS.contains(&c)) {
            return Some(format!(
                "Invalid request.\n\n{c} is not a valid conclusion."
            ));
        }
    }
    if body["status"] == "completed" && body.get("conclusion").is_none() {
        return Some("Invalid request.\n\nconclusion is required when status is completed.".into());
    }
    let output = &body["output"];
    if !output.is_null() {
        for k in ["title", "summary"] {
            if !output[k].is_string() {
                return Some(format!("Invalid request.\n\n\"{k}\" wasn't supplied."));
            }
        }
        for k in ["summary", "text"] {
            if output[k]
                .as_str()
                .is_some_and(|t| t.chars().count() > 65535)
            {
                return Some(format!(
                    "Invalid request.\n\noutput.{k} is too long (maximum is 65535 characters)."
                ));
            }
        }
    }
    if body.get("external_id").is_some_and(|e| !e.is_string()) {
        return Some("Invalid request.\n\nexternal_id must be a string.".into());
    }
    None
}

fn as_json(r: &FakeCheckRun) -> Value {
    json!({
        "id": r.id, "head_sha": r.head_sha, "name": r.name, "status": r.status,
        "conclusion": r.conclusion, "external_id": r.external_id, "details_url": r.details_url,
        "output": {"title": r.title, "summary": r.summary},
        "app": {"id": 1, "slug": "fake"},
    })
}

fn apply(run: &mut FakeCheckRun, body: &Value) {
    if let Some(n) = body["name"].as_str() {
        run.name = n.to_owned();
    }
    if let Some(s) = body["status"].as_str() {
        run.status = s.to_owned();
    }
    if let Some(c) = body["conclusion"].as_str() {
        run.conclusion = Some(c.to_owned());
        // GitHub: a conclusion completes the check run.
        run.status = "completed".into();
    }
    if let Some(e) = body["external_id"].as_str() {
        run.external_id = Some(e.to_owned());
    }
    if let Some(u) = body["details_url"].as_str() {
        run.details_url = Some(u.to_owned());
    }
    if let Some(t) = body["output"]["title"].as_str() {
        run.title = t.to_owned();
    }
    if let Some(t) = body["output"]["summary"].as_str() {
        run.summary = t.to_owned();
    }
    run.history
        .push((run.status.clone(), run.conclusion.clone()));
}

impl FakeApp {
    /// Serves one Checks API call (see the module doc).
    pub(super) fn checks_call(&self, req: &Request) -> Response {
        let arrived = Instant::now();
        let response = self.checks_answer(req);
        self.checks().answered.push((arrived, response.status));
        response
    }

    fn checks_answer(&self, req: &Request) -> Response {
        let grant = self.grant_for(req);
        let mut c = self.checks();
        c.requests += 1;
        if let Some((until, answer)) = c.outage.clone() {
            if Instant::now() < until {
                return scripted_response(&answer);
            }
            c.outage = None;
        }
        if let Some(answer) = c.script.pop_front() {
            return scripted_response(&answer);
        }
        let Some(grant) = grant else {
            return github_error(401, "Bad credentials");
        };
        let parts: Vec<String> = req
            .path
            .trim_start_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect();
        let repo = format!("{}/{}", parts[1], parts[2]);
        if !grant.covers(&repo) {
            return github_error(404, "Not Found");
        }
        let may_write = grant.request["permissions"]["checks"] == "write";
        if c.deny || (req.method != "GET" && !may_write) {
            return github_error(403, MSG_NOT_ACCESSIBLE);
        }
        match req.method.as_str() {
            "GET" => {
                let git_ref = &parts[4];
                let list: Vec<Value> = c
                    .runs
                    .iter()
                    .filter(|r| r.repo == repo && &r.head_sha == git_ref)
                    .map(as_json)
                    .collect();
                Response::json(200, &json!({"total_count": list.len(), "check_runs": list}))
            }
            "POST" => {
                let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                if let Some(why) = invalid(&body, true) {
                    return github_error(422, &why);
                }
                c.next_id += 1;
                let mut run = FakeCheckRun {
                    id: 1000 + c.next_id,
                    repo,
                    head_sha: body["head_sha"].as_str().unwrap_or("").to_owned(),
                    name: String::new(),
                    status: "queued".into(),
                    conclusion: None,
                    external_id: None,
                    details_url: None,
                    title: String::new(),
                    summary: String::new(),
                    history: Vec::new(),
                };
                apply(&mut run, &body);
                let answer = as_json(&run);
                c.runs.push(run);
                Response::json(201, &answer)
            }
            _ => {
                let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                if let Some(why) = invalid(&body, false) {
                    return github_error(422, &why);
                }
                let id: i64 = parts[4].parse().unwrap_or(-1);
                match c.runs.iter_mut().find(|r| r.id == id && r.repo == repo) {
                    Some(run) => {
                        apply(run, &body);
                        Response::json(200, &as_json(run))
                    }
                    None => github_error(404, "Not Found"),
                }
            }
        }
    }
}

impl super::fake_github::FakeGitHub {
    /// The installation tokens issued for anything but check runs (the check reporter asks for
    /// `checks: write` tokens of its own), oldest first.
    pub fn grants_except_checks(&self) -> Vec<super::fake_github::Grant> {
        self.grants()
            .into_iter()
            .filter(|g| g.request["permissions"].get("checks").is_none())
            .collect()
    }
}
