//! Lock-file parsing and validation: one test per error, init failures, tolerance.

use serde_json::{json, Value};

use super::*;

fn job(extra: Value) -> Value {
    let mut j = json!({"_type": "static", "name": "build", "runsOn": [{"kind": "exact", "value": "linux"}],
        "needs": [], "steps": [{"name": "step-1", "hasOutputs": false}]});
    if let (Some(j), Some(e)) = (j.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                j.remove(k);
            } else {
                j.insert(k.clone(), v.clone());
            }
        }
    }
    j
}

fn lock(jobs: Vec<Value>, triggers: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"schemaVersion": 29, "source": {"file": "kici.ts", "export": "default"},
        "contentHash": "x", "futureField": {"a": 1},
        "workflows": [{"name": "ci", "contentHash": "h", "compileSchemaVersion": 29,
            "triggers": triggers, "jobs": jobs, "futureWorkflowField": true}]}),
    )
    .expect("json")
}

fn push_trigger() -> Value {
    json!([{"_type": "push", "branches": [{"type": "glob", "pattern": "main"}], "paths": []}])
}

#[test]
fn a_valid_lock_parses_and_keeps_unknown_fields() {
    let lock = parse_and_validate(&lock(vec![job(json!({}))], push_trigger())).expect("valid");
    assert_eq!(lock.schema_version, 29);
    assert!(lock.extra.contains_key("futureField"));
    let wf = &lock.workflows[0];
    assert!(wf.extra.contains_key("futureWorkflowField"));
    assert_eq!(wf.init_failure, None);
    assert!(matches!(wf.triggers[0], LockTrigger::Push(_)));
    let jobs = wf.static_jobs();
    assert_eq!(jobs[0].name, "build");
    assert!(
        jobs[0].extra.contains_key("steps"),
        "steps kept for the agent"
    );
}

#[test]
fn unknown_trigger_types_are_kept() {
    let triggers = json!([{"_type": "schedule", "cronExpression": "0 * * * *", "timezone": "UTC"}]);
    let lock = parse_and_validate(&lock(vec![job(json!({}))], triggers)).expect("valid");
    assert_eq!(lock.workflows[0].triggers[0].kind(), "schedule");
}

#[test]
fn not_json_or_no_version_is_corrupt() {
    for bytes in [
        &b"{nope"[..],
        b"[]",
        br#"{"schemaVersion": "29"}"#,
        br#"{"workflows": []}"#,
    ] {
        let err = parse_and_validate(bytes).expect_err("corrupt");
        assert!(matches!(err, LockError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().contains("kici compile"));
    }
}

#[test]
fn another_schema_version_names_both_and_says_recompile() {
    let err = parse_and_validate(br#"{"schemaVersion": 28, "workflows": []}"#).expect_err("28");
    assert_eq!(err, LockError::SchemaVersion { found: "28".into() });
    let text = err.to_string();
    assert!(
        text.contains("28") && text.contains("29") && text.contains("kici compile"),
        "{text}"
    );
    assert!(text.contains("push again"), "{text}");
}

#[test]
fn bad_label_matchers_are_refused() {
    for runs_on in [
        json!([{"kind": "glob", "value": "x"}]),
        json!(["linux"]),
        json!([{"kind": "exact"}]),
    ] {
        let err = parse_and_validate(&lock(vec![job(json!({"runsOn": runs_on}))], push_trigger()))
            .expect_err("bad matcher");
        assert!(matches!(err, LockError::LabelMatcher { .. }), "{err:?}");
        assert!(err.to_string().contains("\"build\""), "{err}");
    }
    let err = parse_and_validate(&lock(
        vec![job(
            json!({"excludeLabels": [{"kind": "exact", "value": 3}]}),
        )],
        push_trigger(),
    ))
    .expect_err("bad exclude");
    assert!(matches!(err, LockError::LabelMatcher { .. }));
}

#[test]
fn regexes_that_do_not_compile_are_refused() {
    let bad_label =
        job(json!({"runsOn": [{"kind": "regex", "source": "^gpu-(?=a)", "flags": ""}]}));
    let err = parse_and_validate(&lock(vec![bad_label], push_trigger())).expect_err("lookahead");
    assert!(matches!(err, LockError::Pattern { .. }), "{err:?}");
    assert!(err.to_string().contains("lookahead"), "{err}");
    let bad_branch =
        json!([{"_type": "push", "branches": [{"type": "regex", "pattern": "(", "flags": ""}]}]);
    let err = parse_and_validate(&lock(vec![job(json!({}))], bad_branch)).expect_err("bad branch");
    assert!(
        err.to_string().contains("trigger 1 (push) branches"),
        "{err}"
    );
    let bad_flag =
        json!([{"_type": "tag", "patterns": [{"type": "regex", "pattern": "v1", "flags": "q"}]}]);
    assert!(parse_and_validate(&lock(vec![job(json!({}))], bad_flag)).is_err());
}

#[test]
fn runs_on_and_runs_on_all_are_exclusive_and_required() {
    let all = json!({"include": [[{"kind": "exact", "value": "a"}]], "exclude": []});
    let both = job(json!({"runsOnAll": all}));
    let err = parse_and_validate(&lock(vec![both], push_trigger())).expect_err("both");
    assert!(
        matches!(err, LockError::RunsOn { both: true, .. }),
        "{err:?}"
    );
    let neither = job(json!({"runsOn": null}));
    let err = parse_and_validate(&lock(vec![neither], push_trigger())).expect_err("neither");
    assert!(
        matches!(err, LockError::RunsOn { both: false, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("neither runsOn nor runsOnAll"));
}

#[test]
fn javascript_evaluation_is_an_init_failure_not_a_drop() {
    let cases = [
        (
            job(json!({"env": {"_type": "inline", "expression": "() => ({})"}})),
            "env",
        ),
        (
            job(json!({"concurrencyGroup": {"_type": "inline", "expression": "x"}})),
            "concurrencyGroup",
        ),
        (
            job(
                json!({"environments": [{"value": {"_type": "inline", "expression": "x"}, "dynamic": true}]}),
            ),
            "environment",
        ),
        (
            job(json!({"matrix": {"_type": "dynamic", "source": {"file": "a", "index": 0}}})),
            "dynamic matrix",
        ),
        (
            json!({"_type": "dynamic", "source": {"file": "a", "index": 0}}),
            "dynamic job",
        ),
        (
            job(json!({"needs": [{"group": "g", "runOn": ["success"]}]})),
            "group",
        ),
    ];
    for (j, expected) in cases {
        let lock = parse_and_validate(&lock(vec![j], push_trigger())).expect("kept");
        let reason = lock.workflows[0].init_failure.clone().unwrap_or_default();
        assert!(
            reason.contains(expected) && reason.contains("\"ci\""),
            "{expected}: {reason}"
        );
    }
    let plain = parse_and_validate(&lock(vec![job(json!({"env": {"A": "1"}}))], push_trigger()));
    assert_eq!(plain.expect("valid").workflows[0].init_failure, None);
}
