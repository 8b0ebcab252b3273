//! Never-panic property of matching: a lock file that passed validation against any event.

use proptest::prelude::*;
use serde_json::json;

use super::{match_all, needs_changed_files};
use crate::pipeline::event::{normalize_generic, normalize_github};
use crate::pipeline::lockfile::{parse_and_validate, props::plausible_lock};

proptest! {
    #![proptest_config(crate::props::config())]

    #[test]
    fn never_panics_matching(
        lock in plausible_lock(),
        event in prop::sample::select(vec!["push", "pull_request", "issue_comment", "release"]),
        branch in "[a-z!*(){}./@+?-]{0,16}",
        files in prop::collection::vec("[a-z./*]{0,12}", 0..4),
        generic in any::<bool>(),
    ) {
        let Ok(lock) = parse_and_validate(lock.to_string().as_bytes()) else {
            return Ok(());
        };
        let payload = json!({
            "ref": format!("refs/heads/{branch}"), "after": "a", "before": "b",
            "repository": {"full_name": "o/r", "default_branch": branch},
            "pull_request": {"head": {"ref": branch, "sha": "a"}, "base": {"ref": branch}},
            "comment": {"body": branch}, "action": "created",
        });
        let mut e = if generic {
            normalize_generic("s", "s", event, &payload)
        } else {
            normalize_github(event, Some("opened"), &payload)
        };
        if needs_changed_files(&lock.workflows, &e) {
            e.changed_files = Some(files);
        }
        match_all(&lock.workflows, &e);
    }
}
