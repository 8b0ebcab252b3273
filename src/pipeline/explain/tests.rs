//! Traces made by the real matcher, explained; traces as older versions stored them; and
//! anything else a stored row may hold, which never panics.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::pipeline::{
    event::{normalize_github, NormalizedEvent},
    lockfile::LockWorkflow,
    matcher::match_workflow,
};

fn wf(name: &str, triggers: Value) -> LockWorkflow {
    serde_json::from_value(json!({"name": name, "triggers": triggers, "jobs": []}))
        .expect("workflow")
}

fn glob(p: &str) -> Value {
    json!({"type": "glob", "pattern": p})
}

fn push(branch: &str, files: Option<&[&str]>) -> NormalizedEvent {
    let mut e = normalize_github(
        "push",
        None,
        &json!({"ref": format!("refs/heads/{branch}"), "after": "abc", "repository": {"full_name": "acme/app"}}),
    );
    e.changed_files = files.map(|f| f.iter().map(|s| s.to_string()).collect());
    e
}

fn explained(name: &str, triggers: Value, event: &NormalizedEvent) -> Explained {
    let decision = serde_json::to_value(match_workflow(&wf(name, triggers), event)).unwrap();
    workflow(&decision)
}

#[test]
fn a_branch_that_does_not_match_names_the_branch_and_the_patterns() {
    let e = explained(
        "deploy",
        json!([{"_type": "push", "branches": [glob("main"), glob("release/*")]}]),
        &push("feature/x", None),
    );
    assert!(!e.matched);
    assert_eq!(
        e.text,
        "workflow deploy: push to `feature/x` does not match branches `main`, `release/*`"
    );
}

#[test]
fn paths_count_the_changed_files() {
    let t = json!([{"_type": "push", "paths": ["src/**"]}]);
    let e = explained(
        "build",
        t.clone(),
        &push("main", Some(&["README.md", "docs/a.md", "x"])),
    );
    assert_eq!(
        e.text,
        "workflow build: paths: none of the 3 changed files matches `src/**`"
    );
    let e = explained("build", t.clone(), &push("main", Some(&[])));
    assert!(
        e.text.contains("no changed files are known for this event"),
        "{}",
        e.text
    );
    let t = json!([{"_type": "push", "paths": ["!docs/**"]}]);
    let e = explained("build", t, &push("main", Some(&["docs/a.md", "docs/b.md"])));
    assert_eq!(
        e.text,
        "workflow build: paths: all 2 changed files excluded by `docs/**`"
    );
}

#[test]
fn several_triggers_give_one_reason_each() {
    let t = json!([
        {"_type": "push", "branches": [glob("main")]},
        {"_type": "pr", "events": ["opened"]}
    ]);
    let e = explained("ci", t, &push("dev", None));
    assert_eq!(e.reasons.len(), 2);
    assert_eq!(
        e.text,
        "workflow ci: no trigger matched; trigger 1 (push): push to `dev` does not match branches \
         `main`; trigger 2 (pull_request): only pull_request events; this is a push"
    );
}

#[test]
fn only_other_event_kinds_is_said_once() {
    let t = json!([{"_type": "pr"}, {"_type": "tag", "patterns": [glob("v*")]}]);
    let e = explained("release", t, &push("main", None));
    assert_eq!(
        e.text,
        "workflow release: no trigger for push events (its triggers: pull_request, tag)"
    );
}

#[test]
fn matched_and_trigger_less_workflows() {
    let e = explained(
        "ci",
        json!([{"_type": "pr"}, {"_type": "push", "branches": [glob("main")]}]),
        &push("main", None),
    );
    assert!(e.matched);
    assert_eq!(e.text, "workflow ci: matched trigger 2 (push)");
    let e = explained("idle", json!([]), &push("main", None));
    assert_eq!(
        e.text,
        "workflow idle: it has no triggers, so it never runs"
    );
}

#[test]
fn a_regex_with_a_bar_stays_one_pattern() {
    let t = json!([{"_type": "push", "branches": [{"type": "regex", "pattern": "^(a|b)$"}]}]);
    let e = explained("r", t, &push("c", None));
    assert_eq!(
        e.text,
        "workflow r: push to `c` does not match branches `^(a|b)$`"
    );
}

#[test]
fn traces_stored_by_older_versions_are_explained() {
    // No `trigger`, `patterns` or `files`: split at each event-type check, patterns at `|`.
    let old = json!({
        "workflowName": "deploy", "matched": false, "summary": "No triggers matched",
        "checks": [
            {"check": "event type", "pattern": "push", "value": "push", "passed": true},
            {"check": "branch", "pattern": "main|release/*", "value": "feature/x", "passed": false},
            {"check": "event type", "pattern": "push", "value": "push", "passed": true},
            {"check": "paths", "pattern": "include: [src/**] exclude: []",
             "value": "[a, b, c]", "passed": false}
        ]
    });
    let e = workflow(&old);
    assert_eq!(
        e.reasons,
        [
            "push to `feature/x` does not match branches `main`, `release/*`",
            "paths: none of the 3 changed files matches `src/**`",
        ]
    );
}

#[test]
fn outcomes_say_what_to_do() {
    let missing = json!([{"summary": "no .kici/kici.lock.json in acme/app at abc"}]);
    let said = outcome("lockfile_missing", 0, None, &missing);
    assert_eq!(
        said,
        "lock file missing: no .kici/kici.lock.json in acme/app at abc; add \
         .kici/kici.lock.json (kici compile), commit and push again"
    );
    let corrupt = outcome(
        "lockfile_corrupt",
        0,
        Some("schemaVersion 28 is not 29"),
        &json!([]),
    );
    assert!(corrupt.starts_with("lock file invalid: schemaVersion 28 is not 29; fix it"));
    assert_eq!(
        outcome("processed", 2, None, &json!([])),
        "started 2 run(s)"
    );
    assert_eq!(
        outcome("processed", 0, None, &json!([])),
        "no run started: no workflow matched"
    );
    assert_eq!(
        outcome("failed", 0, Some("GitHub down"), &json!([])),
        "processing failed: GitHub down"
    );
    assert_eq!(notes(&missing).len(), 1);
    assert!(workflows(&missing).is_empty());
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("check".to_owned()),
            Just("event type".to_owned()),
            Just("paths".to_owned()),
            Just("workflowName".to_owned()),
            Just("trigger".to_owned()),
            ".{0,12}".prop_map(String::from)
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("workflowName".to_owned()),
                    Just("checks".to_owned()),
                    Just("matched".to_owned()),
                    Just("check".to_owned()),
                    Just("trigger".to_owned()),
                    Just("patterns".to_owned()),
                    Just("files".to_owned()),
                    Just("passed".to_owned()),
                    Just("value".to_owned()),
                    Just("pattern".to_owned()),
                    Just("matchedTrigger".to_owned()),
                    Just("summary".to_owned())
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_stored_value_is_explained_without_panicking(v in any_json()) {
        let _ = workflows(&v);
        let _ = workflow(&v);
        let _ = outcome("processed", 0, None, &v);
        let _ = notes(&v);
        let _ = workflows(&Value::Array(vec![v]));
    }
}
