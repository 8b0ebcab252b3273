//! Never-panic properties of lock-file parsing and validation: the file comes from the
//! repository, so from any fork's pull request.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::parse_and_validate;

/// Small JSON values of every kind, nested a little, with pattern-like strings.
fn any_json() -> BoxedStrategy<Value> {
    crate::props::json_value("[a-z!*(){}\\[\\]@+?./^$|]{0,12}", "[a-z_]{1,8}", 3)
}

/// A field the validator reads, or anything else.
fn field<S: Strategy<Value = Value>>(plausible: S) -> impl Strategy<Value = Value> {
    prop_oneof![3 => plausible, 1 => any_json()]
}

fn pattern() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["glob", "regex", "other"]),
        "[a-z!*(){}\\[\\]@+?./^$|,\\\\-]{0,16}",
        prop::option::of("[gimsuyx]{0,3}"),
    )
        .prop_map(
            |(kind, pattern, flags)| json!({"type": kind, "pattern": pattern, "flags": flags}),
        )
}

fn trigger() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec![
        "push",
        "pr",
        "tag",
        "comment",
        "release",
        "generic_webhook",
        "schedule",
    ]);
    (
        kind,
        prop::collection::vec(field(pattern()), 0..3),
        prop::collection::vec(field("[a-z*!/{}.]{0,8}".prop_map(Value::String)), 0..3),
        field(any_json()),
    )
        .prop_map(|(kind, patterns, paths, filter)| {
            json!({"_type": kind, "branches": patterns, "targetBranches": patterns,
                   "patterns": patterns, "repos": patterns, "paths": paths,
                   "bodyMatch": patterns.first(), "source": "s", "match": filter})
        })
}

fn label() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z]{0,6}".prop_map(|v| json!({"kind": "exact", "value": v})),
        "[a-z()|+*\\[\\]]{0,8}".prop_map(|s| json!({"kind": "regex", "source": s, "flags": "i"})),
    ]
}

fn job() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["static", "dynamic", "other"]),
        "[a-z]{1,4}",
        field(prop::collection::vec(label(), 0..3).prop_map(Value::Array)),
        field(
            prop::collection::vec("[a-z]{1,4}".prop_map(Value::String), 0..3)
                .prop_map(Value::Array),
        ),
        field(
            prop::collection::btree_map("[a-c]", prop::collection::vec(any::<u8>(), 0..4), 0..4)
                .prop_map(|m| json!({"_type": "static", "values": m})),
        ),
        field(any_json()),
    )
        .prop_map(|(kind, name, runs_on, needs, matrix, steps)| {
            json!({"_type": kind, "name": name, "runsOn": runs_on, "needs": needs,
                   "matrix": matrix, "steps": steps, "env": {"_type": "inline"}})
        })
}

pub(crate) fn plausible_lock() -> impl Strategy<Value = Value> {
    let workflow = (
        "[a-z]{1,6}",
        prop::collection::vec(trigger(), 0..3),
        prop::collection::vec(job(), 0..4),
    )
        .prop_map(
            |(name, triggers, jobs)| json!({"name": name, "triggers": triggers, "jobs": jobs}),
        );
    (
        field(Just(json!(29))),
        prop::collection::vec(workflow, 0..3),
    )
        .prop_map(|(version, workflows)| json!({"schemaVersion": version, "workflows": workflows}))
}

proptest! {
    #![proptest_config(crate::props::config())]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_and_validate(&bytes);
    }

    #[test]
    fn never_panics_on_arbitrary_json(value in any_json()) {
        let _ = parse_and_validate(value.to_string().as_bytes());
    }

    #[test]
    fn never_panics_on_plausible_lock_files(lock in plausible_lock()) {
        let _ = parse_and_validate(lock.to_string().as_bytes());
    }
}
