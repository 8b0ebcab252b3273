//! Never-panic properties of event normalization: payloads are whatever a webhook sender (or
//! anyone holding a generic source's secret) posts, under any event name.

use proptest::prelude::*;
use serde_json::Value;

use super::{normalize_generic, normalize_github, normalize_local};

const EVENTS: &[&str] = &[
    "push",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "issue_comment",
    "repository_dispatch",
    "release",
    "create",
    "delete",
    "status",
    "workflow_run",
    "fork",
    "star",
    "watch",
    "ping",
    "installation",
    "",
    "unknown",
];

/// The keys the normalizers read, so generated objects often have the right names with the
/// wrong shapes.
const KEYS: &[&str] = &[
    "ref",
    "ref_type",
    "after",
    "before",
    "head_commit",
    "repository",
    "full_name",
    "name",
    "owner",
    "login",
    "default_branch",
    "pull_request",
    "head",
    "base",
    "sha",
    "repo",
    "fork",
    "number",
    "installation",
    "id",
    "sender",
    "comment",
    "body",
    "issue",
    "release",
    "tag_name",
    "action",
    "workflow_run",
    "head_branch",
    "branches",
    "state",
    "client_payload",
    "commits",
    "added",
    "modified",
    "removed",
    "branch",
    "repoUrl",
    "url",
];

fn json_value() -> BoxedStrategy<Value> {
    let strings = prop_oneof![
        prop::sample::select(vec![
            "refs/heads/main",
            "refs/tags/v1",
            "main",
            "",
            "/",
            "0"
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    let keys = prop::sample::select(KEYS).prop_map(str::to_owned);
    crate::props::json_value(strings, keys, 4)
}

proptest! {
    #![proptest_config(crate::props::config())]

    #[test]
    fn never_panics_normalizing(
        event in prop::sample::select(EVENTS),
        action in prop::option::of("[a-z_]{0,12}"),
        payload in json_value(),
    ) {
        let _ = normalize_github(event, action.as_deref(), &payload);
        let _ = normalize_local(event, &payload);
        let _ = normalize_generic("id", "name", event, &payload);
    }

    #[test]
    fn never_panics_on_arbitrary_event_names(event in any::<String>(), payload in json_value()) {
        let _ = normalize_github(&event, None, &payload);
        let _ = normalize_local(&event, &payload);
    }
}
