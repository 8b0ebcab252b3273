//! Event normalization (docs/architecture.md, "Event normalization"): a delivery's provider, event
//! name and payload become the one event shape trigger matching reads. Pure: the caller passes the
//! parsed payload.
//!
//! GitHub events follow the reference normalizer's table; the local provider reads a
//! GitHub-shaped payload with the event type from `x-event-type`; generic sources become
//! `generic_webhook` events. An event the table does not know is kept as [`EventKind::Unknown`]
//! with its name, so the event log can say what arrived, and it never matches a trigger.

use serde::Serialize;
use serde_json::Value;

/// What kind of event this is, in trigger terms (`LockTrigger._type` matches against it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Push,
    Tag,
    PullRequest,
    Comment,
    Review,
    ReviewComment,
    Release,
    Dispatch,
    Create,
    Delete,
    Status,
    WorkflowRun,
    Fork,
    Star,
    Watch,
    GenericWebhook,
    /// A local-source event whose type is none of the above (`x-event-type` is free text).
    Other(String),
    /// A GitHub event the normalizer does not know (or one missing what it needs, such as a
    /// `push` without `ref`): recorded, never matched.
    Unknown(String),
}

impl EventKind {
    /// The `type` string of the reference's `SimulatedEvent` (what the decision trace shows).
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Push => "push",
            EventKind::Tag => "tag",
            EventKind::PullRequest => "pull_request",
            EventKind::Comment => "comment",
            EventKind::Review => "review",
            EventKind::ReviewComment => "review_comment",
            EventKind::Release => "release",
            EventKind::Dispatch => "dispatch",
            EventKind::Create => "create",
            EventKind::Delete => "delete",
            EventKind::Status => "status",
            EventKind::WorkflowRun => "workflow_run",
            EventKind::Fork => "fork",
            EventKind::Star => "star",
            EventKind::Watch => "watch",
            EventKind::GenericWebhook => "generic_webhook",
            EventKind::Other(name) | EventKind::Unknown(name) => name,
        }
    }

    /// False for [`EventKind::Unknown`]: such an event is logged and skipped.
    pub fn is_matchable(&self) -> bool {
        !matches!(self, EventKind::Unknown(_))
    }

    fn from_type(name: &str) -> EventKind {
        match name {
            "push" => EventKind::Push,
            "tag" => EventKind::Tag,
            "pull_request" => EventKind::PullRequest,
            "comment" => EventKind::Comment,
            "review" => EventKind::Review,
            "review_comment" => EventKind::ReviewComment,
            "release" => EventKind::Release,
            "dispatch" => EventKind::Dispatch,
            "create" => EventKind::Create,
            "delete" => EventKind::Delete,
            "status" => EventKind::Status,
            "workflow_run" => EventKind::WorkflowRun,
            "fork" => EventKind::Fork,
            "star" => EventKind::Star,
            "watch" => EventKind::Watch,
            "generic_webhook" => EventKind::GenericWebhook,
            other => EventKind::Other(other.to_owned()),
        }
    }
}

/// Where a delivery came from, which decides how it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Github,
    Local,
    Generic,
}

/// The generic-source facts a `generic_webhook` trigger matches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenericDelivery {
    /// The source's id and name: a trigger's `source` may name either.
    pub source_id: String,
    pub source_name: String,
    /// The extracted event type (`default` when none was found).
    pub event_type: String,
}

/// The normalized event (the reference's `SimulatedEvent`), plus the commit to read the lock
/// file at and the repository, so the caller has everything from one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NormalizedEvent {
    pub kind: EventKind,
    pub provider: Provider,
    /// The raw action (`opened`, `synchronize`, `created`, …) when the event has one.
    pub action: Option<String>,
    /// Branch for pushes and PRs (the base), tag name for tags, default branch for comments.
    pub target_branch: String,
    /// PR head branch.
    pub source_branch: Option<String>,
    pub base_branch: Option<String>,
    pub is_fork_pr: bool,
    pub pr_number: Option<u64>,
    /// What to read the lock file at (`extractRef`): a SHA, a ref name, or `HEAD`.
    pub sha: String,
    /// `owner/name`: `repository.full_name`, else `owner.login/name`.
    pub repo: Option<String>,
    pub sender_username: Option<String>,
    /// The sender's numeric id as a string (logins are mutable; the id is the identity).
    pub sender_user_id: Option<String>,
    /// GitHub App installation id (`installation.id`), for the installation token.
    pub installation_id: Option<u64>,
    pub generic: Option<GenericDelivery>,
    /// Changed files, filled in by the caller when a trigger has path filters.
    pub changed_files: Option<Vec<String>>,
    #[serde(skip)]
    pub payload: Value,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn default_branch(p: &Value) -> String {
    str_at(p, &["repository", "default_branch"])
        .unwrap_or("main")
        .to_owned()
}

/// `repository.full_name`, else `repository.owner.login/repository.name`.
pub fn repo_identifier(p: &Value) -> Option<String> {
    if let Some(full) = str_at(p, &["repository", "full_name"]) {
        return Some(full.to_owned());
    }
    let owner = str_at(p, &["repository", "owner", "login"]).filter(|s| !s.is_empty())?;
    let name = str_at(p, &["repository", "name"]).filter(|s| !s.is_empty())?;
    Some(format!("{owner}/{name}"))
}

fn sender(p: &Value) -> (Option<String>, Option<String>) {
    let login = str_at(p, &["sender", "login"]).map(str::to_owned);
    let id = match p.get("sender").and_then(|s| s.get("id")) {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    (login, id)
}

fn is_fork(pr: Option<&Value>) -> bool {
    let Some(pr) = pr else { return false };
    match (
        str_at(pr, &["head", "repo", "full_name"]),
        str_at(pr, &["base", "repo", "full_name"]),
    ) {
        (Some(head), Some(base)) => head != base,
        _ => false, // a deleted fork has `head.repo: null`: not provably a fork
    }
}

/// `extractRef`: the commit (or ref) the lock file is read at.
fn lock_ref(event: &str, p: &Value) -> String {
    let found = match event {
        "push" => str_at(p, &["after"]),
        "pull_request" | "pull_request_review" | "pull_request_review_comment" => {
            str_at(p, &["pull_request", "head", "sha"])
        }
        "status" => str_at(p, &["sha"]),
        "release" => str_at(p, &["release", "target_commitish"]),
        _ => None,
    };
    found.unwrap_or("HEAD").to_owned()
}

fn base(kind: EventKind, provider: Provider, event: &str, p: &Value) -> NormalizedEvent {
    let (sender_username, sender_user_id) = sender(p);
    NormalizedEvent {
        kind,
        provider,
        action: None,
        target_branch: String::new(),
        source_branch: None,
        base_branch: None,
        is_fork_pr: false,
        pr_number: None,
        sha: lock_ref(event, p),
        repo: repo_identifier(p),
        sender_username,
        sender_user_id,
        installation_id: p
            .get("installation")
            .and_then(|i| i.get("id"))
            .and_then(Value::as_u64),
        generic: None,
        changed_files: None,
        payload: p.clone(),
    }
}

/// A GitHub delivery (`X-GitHub-Event`, `payload.action`, payload), as docs/architecture.md, "Event
/// normalization", lists them.
pub fn normalize_github(event: &str, action: Option<&str>, payload: &Value) -> NormalizedEvent {
    let p = payload;
    let action = action.or_else(|| str_at(p, &["action"])).map(str::to_owned);
    let unknown = || {
        base(
            EventKind::Unknown(event.to_owned()),
            Provider::Github,
            event,
            p,
        )
    };
    let mut e = match event {
        "push" => {
            let Some(r) = str_at(p, &["ref"]).filter(|r| !r.is_empty()) else {
                return unknown();
            };
            if let Some(tag) = r.strip_prefix("refs/tags/") {
                let mut e = base(EventKind::Tag, Provider::Github, event, p);
                e.target_branch = tag.to_owned();
                return e;
            }
            let mut e = base(EventKind::Push, Provider::Github, event, p);
            e.target_branch = r.strip_prefix("refs/heads/").unwrap_or(r).to_owned();
            return e;
        }
        "pull_request" | "pull_request_review" | "pull_request_review_comment" => {
            let pr = p.get("pull_request");
            let base_ref = pr.and_then(|pr| str_at(pr, &["base", "ref"]));
            let kind = match event {
                "pull_request" => EventKind::PullRequest,
                "pull_request_review" => EventKind::Review,
                _ => EventKind::ReviewComment,
            };
            let target = match (base_ref, &kind) {
                (Some(b), _) => b.to_owned(),
                (None, EventKind::PullRequest) => return unknown(),
                (None, _) => default_branch(p),
            };
            let mut e = base(kind, Provider::Github, event, p);
            e.target_branch = target.clone();
            e.base_branch = Some(target);
            e.source_branch = pr
                .and_then(|pr| str_at(pr, &["head", "ref"]))
                .map(str::to_owned);
            e.is_fork_pr = is_fork(pr);
            e.pr_number = pr.and_then(|pr| pr.get("number")).and_then(Value::as_u64);
            e
        }
        "issue_comment" => {
            let mut e = base(EventKind::Comment, Provider::Github, event, p);
            e.target_branch = default_branch(p);
            e
        }
        "repository_dispatch" => {
            let mut e = base(EventKind::Dispatch, Provider::Github, event, p);
            e.target_branch = default_branch(p);
            e
        }
        "release" => {
            let mut e = base(EventKind::Release, Provider::Github, event, p);
            e.target_branch = str_at(p, &["release", "target_commitish"])
                .map(str::to_owned)
                .unwrap_or_else(|| default_branch(p));
            e
        }
        "create" | "delete" => {
            let kind = if event == "create" {
                EventKind::Create
            } else {
                EventKind::Delete
            };
            let mut e = base(kind, Provider::Github, event, p);
            e.target_branch = str_at(p, &["ref"])
                .map(str::to_owned)
                .unwrap_or_else(|| default_branch(p));
            return e; // no action on create/delete
        }
        "status" => {
            let mut e = base(EventKind::Status, Provider::Github, event, p);
            let first = p.get("branches").and_then(|b| b.get(0));
            e.target_branch = first
                .and_then(|b| str_at(b, &["name"]))
                .map(str::to_owned)
                .unwrap_or_else(|| default_branch(p));
            return e;
        }
        "workflow_run" => {
            let mut e = base(EventKind::WorkflowRun, Provider::Github, event, p);
            e.target_branch = str_at(p, &["workflow_run", "head_branch"])
                .map(str::to_owned)
                .unwrap_or_else(|| default_branch(p));
            e
        }
        "fork" | "star" | "watch" => {
            let kind = EventKind::from_type(event);
            let mut e = base(kind, Provider::Github, event, p);
            e.target_branch = default_branch(p);
            if event == "fork" {
                return e; // the reference keeps no action for forks
            }
            e
        }
        _ => return unknown(),
    };
    e.action = action;
    e
}

/// A local-source delivery: type from `x-event-type`, branch from `payload.ref` without
/// `refs/heads/` or `refs/tags/` (else `__local__`), action from `payload.action`.
pub fn normalize_local(event_type: &str, payload: &Value) -> NormalizedEvent {
    let p = payload;
    let mut e = base(
        EventKind::from_type(event_type),
        Provider::Local,
        event_type,
        p,
    );
    e.action = str_at(p, &["action"]).map(str::to_owned);
    e.target_branch = match str_at(p, &["ref"]) {
        Some(r) => r
            .strip_prefix("refs/heads/")
            .or_else(|| r.strip_prefix("refs/tags/"))
            .unwrap_or(r)
            .to_owned(),
        None => "__local__".to_owned(),
    };
    if event_type == "pull_request" {
        e.source_branch = str_at(p, &["pull_request", "head", "ref"]).map(str::to_owned);
    }
    e.installation_id = None; // local sources carry no credentials
    e
}

/// A generic-source delivery: a `generic_webhook` event whose action is the event type
/// (none when it is `default`), with no repository, branch (`__generic__`) or commit.
pub fn normalize_generic(
    source_id: &str,
    source_name: &str,
    event_type: &str,
    payload: &Value,
) -> NormalizedEvent {
    let mut e = base(
        EventKind::GenericWebhook,
        Provider::Generic,
        "",
        &Value::Null,
    );
    e.payload = payload.clone();
    e.action = (event_type != "default").then(|| event_type.to_owned());
    e.target_branch = "__generic__".to_owned();
    e.generic = Some(GenericDelivery {
        source_id: source_id.to_owned(),
        source_name: source_name.to_owned(),
        event_type: event_type.to_owned(),
    });
    e
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
