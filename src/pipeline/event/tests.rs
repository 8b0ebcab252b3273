//! Table-driven normalization tests over realistic GitHub payload fragments.

use serde_json::{json, Value};

use super::*;

fn repo() -> Value {
    json!({"full_name": "acme/app", "name": "app", "owner": {"login": "acme"}, "default_branch": "trunk"})
}

fn sender() -> Value {
    json!({"login": "octocat", "id": 583231})
}

struct Row {
    name: &'static str,
    event: &'static str,
    payload: Value,
    kind: EventKind,
    target: &'static str,
    sha: &'static str,
}

#[test]
fn github_events_follow_the_normalization_table() {
    let rows = vec![
        Row {
            name: "branch push",
            event: "push",
            payload: json!({"ref": "refs/heads/feature/x", "after": "abc123", "repository": repo(), "sender": sender(), "installation": {"id": 42}}),
            kind: EventKind::Push,
            target: "feature/x",
            sha: "abc123",
        },
        Row {
            name: "tag push",
            event: "push",
            payload: json!({"ref": "refs/tags/v1.2.3", "after": "def456", "repository": repo()}),
            kind: EventKind::Tag,
            target: "v1.2.3",
            sha: "def456",
        },
        Row {
            name: "pull request",
            event: "pull_request",
            payload: json!({"action": "synchronize", "number": 7, "repository": repo(), "pull_request": {
                "number": 7, "base": {"ref": "main", "repo": {"full_name": "acme/app"}},
                "head": {"ref": "feat", "sha": "headsha", "repo": {"full_name": "acme/app"}}}}),
            kind: EventKind::PullRequest,
            target: "main",
            sha: "headsha",
        },
        Row {
            name: "issue comment goes to the default branch",
            event: "issue_comment",
            payload: json!({"action": "created", "repository": repo(), "issue": {"number": 3}, "comment": {"body": "/retry"}}),
            kind: EventKind::Comment,
            target: "trunk",
            sha: "HEAD",
        },
        Row {
            name: "issue comment without a default branch falls back to main",
            event: "issue_comment",
            payload: json!({"action": "created", "repository": {"full_name": "acme/app"}}),
            kind: EventKind::Comment,
            target: "main",
            sha: "HEAD",
        },
        Row {
            name: "review",
            event: "pull_request_review",
            payload: json!({"action": "submitted", "repository": repo(), "review": {"state": "approved"},
                "pull_request": {"base": {"ref": "release/1"}, "head": {"ref": "fix", "sha": "h2"}}}),
            kind: EventKind::Review,
            target: "release/1",
            sha: "h2",
        },
        Row {
            name: "review comment",
            event: "pull_request_review_comment",
            payload: json!({"action": "created", "repository": repo(),
                "pull_request": {"base": {"ref": "main"}, "head": {"ref": "fix", "sha": "h3"}}}),
            kind: EventKind::ReviewComment,
            target: "main",
            sha: "h3",
        },
        Row {
            name: "release reads target_commitish",
            event: "release",
            payload: json!({"action": "published", "repository": repo(), "release": {"tag_name": "v2", "target_commitish": "stable"}}),
            kind: EventKind::Release,
            target: "stable",
            sha: "stable",
        },
        Row {
            name: "create",
            event: "create",
            payload: json!({"ref": "v9", "ref_type": "tag", "repository": repo()}),
            kind: EventKind::Create,
            target: "v9",
            sha: "HEAD",
        },
        Row {
            name: "delete",
            event: "delete",
            payload: json!({"ref": "old", "ref_type": "branch", "repository": repo()}),
            kind: EventKind::Delete,
            target: "old",
            sha: "HEAD",
        },
        Row {
            name: "status reads sha and the first branch",
            event: "status",
            payload: json!({"sha": "s1", "state": "success", "branches": [{"name": "dev"}], "repository": repo()}),
            kind: EventKind::Status,
            target: "dev",
            sha: "s1",
        },
        Row {
            name: "unknown event is kept by name",
            event: "deployment_status",
            payload: json!({"repository": repo()}),
            kind: EventKind::Unknown("deployment_status".into()),
            target: "",
            sha: "HEAD",
        },
        Row {
            name: "push without a ref cannot be matched",
            event: "push",
            payload: json!({"repository": repo()}),
            kind: EventKind::Unknown("push".into()),
            target: "",
            sha: "HEAD",
        },
    ];
    let mut wrong = Vec::new();
    for row in rows {
        let e = normalize_github(row.event, None, &row.payload);
        if e.kind != row.kind || e.target_branch != row.target || e.sha != row.sha {
            wrong.push(format!(
                "{}: got {:?} {:?} {:?}, want {:?} {:?} {:?}",
                row.name, e.kind, e.target_branch, e.sha, row.kind, row.target, row.sha
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn push_carries_repo_sender_and_installation() {
    let p = json!({"ref": "refs/heads/main", "after": "a", "repository": repo(), "sender": sender(), "installation": {"id": 42}});
    let e = normalize_github("push", None, &p);
    assert_eq!(e.repo.as_deref(), Some("acme/app"));
    assert_eq!(e.sender_username.as_deref(), Some("octocat"));
    assert_eq!(e.sender_user_id.as_deref(), Some("583231"));
    assert_eq!(e.installation_id, Some(42));
    assert_eq!(e.action, None);
    assert!(e.kind.is_matchable());
}

#[test]
fn repo_falls_back_to_owner_and_name() {
    let p = json!({"ref": "refs/heads/main", "repository": {"name": "app", "owner": {"login": "acme"}}});
    assert_eq!(
        normalize_github("push", None, &p).repo.as_deref(),
        Some("acme/app")
    );
}

#[test]
fn pull_request_fork_detection_and_fields() {
    let pr = |head_repo: Value| {
        json!({"action": "opened", "repository": repo(), "pull_request": {"number": 12,
            "base": {"ref": "main", "repo": {"full_name": "acme/app"}},
            "head": {"ref": "patch-1", "sha": "h", "repo": head_repo}}})
    };
    let fork = normalize_github(
        "pull_request",
        None,
        &pr(json!({"full_name": "mallory/app"})),
    );
    assert!(fork.is_fork_pr);
    assert_eq!(fork.action.as_deref(), Some("opened"));
    assert_eq!(fork.source_branch.as_deref(), Some("patch-1"));
    assert_eq!(fork.base_branch.as_deref(), Some("main"));
    assert_eq!(fork.pr_number, Some(12));
    let same = normalize_github("pull_request", None, &pr(json!({"full_name": "acme/app"})));
    assert!(!same.is_fork_pr);
    let deleted = normalize_github("pull_request", None, &pr(Value::Null));
    assert!(
        !deleted.is_fork_pr,
        "a deleted head repository is not provably a fork"
    );
    let explicit = normalize_github("pull_request", Some("reopened"), &pr(Value::Null));
    assert_eq!(
        explicit.action.as_deref(),
        Some("reopened"),
        "the caller's action wins"
    );
}

#[test]
fn unknown_events_are_not_matchable() {
    let e = normalize_github("gollum", None, &json!({}));
    assert!(!e.kind.is_matchable());
    assert_eq!(e.kind.as_str(), "gollum");
}

#[test]
fn local_events_read_type_header_and_ref() {
    let e = normalize_local(
        "push",
        &json!({"ref": "refs/heads/dev", "after": "c0ffee", "repository": {"full_name": "me/proj"}}),
    );
    assert_eq!(
        (e.kind.clone(), e.target_branch.as_str(), e.sha.as_str()),
        (EventKind::Push, "dev", "c0ffee")
    );
    assert_eq!(e.provider, Provider::Local);
    let tag = normalize_local("push", &json!({"ref": "refs/tags/v1"}));
    assert_eq!(
        tag.target_branch, "v1",
        "local tags are stripped but stay `push` typed"
    );
    assert_eq!(tag.kind, EventKind::Push);
    let bare = normalize_local("custom-thing", &json!({"action": "poke"}));
    assert_eq!(bare.target_branch, "__local__");
    assert_eq!(bare.kind, EventKind::Other("custom-thing".into()));
    assert_eq!(bare.action.as_deref(), Some("poke"));
}

#[test]
fn generic_deliveries_become_generic_webhook_events() {
    let e = normalize_generic("src-1", "stripe", "invoice.paid", &json!({"id": "evt_1"}));
    assert_eq!(e.kind, EventKind::GenericWebhook);
    assert_eq!(e.action.as_deref(), Some("invoice.paid"));
    assert_eq!(e.target_branch, "__generic__");
    assert_eq!(e.repo, None);
    assert_eq!(e.payload["id"], "evt_1");
    let g = e.generic.expect("generic facts");
    assert_eq!(
        (g.source_id.as_str(), g.source_name.as_str()),
        ("src-1", "stripe")
    );
    let default = normalize_generic("src-1", "stripe", "default", &json!({}));
    assert_eq!(default.action, None, "`default` is no event type");
}
