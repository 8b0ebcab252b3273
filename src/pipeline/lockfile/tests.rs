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

/// `lock` with its JSON padded by trailing spaces (valid JSON) to exactly `size` bytes.
fn padded(bytes: Vec<u8>, size: usize) -> Vec<u8> {
    let mut bytes = bytes;
    assert!(
        bytes.len() <= size,
        "the lock is already {} bytes",
        bytes.len()
    );
    bytes.resize(size, b' ');
    bytes
}

#[test]
fn size_at_the_limit_passes_one_more_byte_is_refused() {
    let at = padded(
        lock(vec![job(json!({}))], push_trigger()),
        limits::LOCK_FILE_BYTES,
    );
    assert!(parse_and_validate(&at).is_ok());
    let over = padded(at, limits::LOCK_FILE_BYTES + 1);
    let err = parse_and_validate(&over).expect_err("over").to_string();
    assert!(
        err.contains("is 1048577 bytes, more than 1048576 (the limit on lock-file size)"),
        "{err}"
    );
}

fn workflows(n: usize) -> Vec<u8> {
    let wf = |i: usize| json!({"name": format!("wf{i}"), "triggers": [], "jobs": []});
    let all: Vec<Value> = (0..n).map(wf).collect();
    serde_json::to_vec(&json!({"schemaVersion": 29, "workflows": all})).expect("json")
}

#[test]
fn workflows_at_the_limit_pass_one_more_is_refused() {
    let lock = parse_and_validate(&workflows(limits::WORKFLOWS_PER_LOCK_FILE)).expect("64");
    assert_eq!(lock.workflows.len(), 64);
    let err = parse_and_validate(&workflows(65))
        .expect_err("65")
        .to_string();
    assert!(
        err.contains("has 65 workflows, more than 64 (the limit on workflows per lock file)"),
        "{err}"
    );
}

#[test]
fn steps_at_the_limit_pass_one_more_is_refused() {
    let steps =
        |n: usize| -> Vec<Value> { (0..n).map(|i| json!({"name": format!("s{i}")})).collect() };
    let at = job(json!({"steps": steps(limits::STEPS_PER_JOB)}));
    assert!(parse_and_validate(&lock(vec![at], push_trigger())).is_ok());
    let over = job(json!({"steps": steps(257)}));
    let err = parse_and_validate(&lock(vec![over], push_trigger()))
        .expect_err("257")
        .to_string();
    assert!(
        err.contains(
            "workflow \"ci\", job \"build\" has 257 steps, more than 256 (the limit on steps per job)"
        ),
        "{err}"
    );
}

#[test]
fn json_nesting_is_refused_cleanly_at_serde_jsons_limit() {
    // The top-level object is one level; `x` adds `levels - 1` arrays.
    let doc = |levels: usize| {
        let inner = format!("{}{}", "[".repeat(levels - 1), "]".repeat(levels - 1));
        format!(r#"{{"schemaVersion": 29, "x": {inner}}}"#).into_bytes()
    };
    assert!(parse_and_validate(&doc(limits::LOCK_FILE_JSON_DEPTH)).is_ok());
    let err = parse_and_validate(&doc(limits::LOCK_FILE_JSON_DEPTH + 1)).expect_err("128");
    assert!(
        err.to_string().contains("recursion limit exceeded"),
        "{err}"
    );
    let err = parse_and_validate(&doc(500_000)).expect_err("deep, no stack overflow");
    assert!(matches!(err, LockError::Corrupt(_)), "{err}");
}

#[test]
fn a_glob_nested_twenty_thousand_levels_is_a_pattern_error_with_an_excerpt() {
    let deep = format!("{}a{}", "@(".repeat(20_000), ")".repeat(20_000));
    let triggers = json!([{"_type": "push", "branches": [{"type": "glob", "pattern": deep}]}]);
    let err = parse_and_validate(&lock(vec![job(json!({}))], triggers)).expect_err("deep");
    let text = err.to_string();
    assert!(matches!(err, LockError::Pattern { .. }), "{text}");
    assert!(
        text.contains("trigger 1 (push) branches: pattern \"@(@(@("),
        "{text}"
    );
    assert!(
        text.contains("nests 20000 levels deep, more than 32"),
        "{text}"
    );
    assert!(text.len() < 500, "only an excerpt of the pattern: {text}");
    let paths =
        json!([{"_type": "push", "branches": [], "paths": [format!("{}a", "{".repeat(40))]}]);
    let err = parse_and_validate(&lock(vec![job(json!({}))], paths)).expect_err("paths");
    assert!(err.to_string().contains("nests 40 levels deep"), "{err}");
}

#[test]
fn generic_webhook_filters_over_the_limits_are_refused() {
    let long_path = format!("$.{}", "a".repeat(2000));
    let triggers = json!([{"_type": "generic_webhook", "source": "s", "match": {long_path: 1}}]);
    let err = parse_and_validate(&lock(vec![job(json!({}))], triggers)).expect_err("long");
    assert!(
        err.to_string().contains("2002 bytes long, more than 1024"),
        "{err}"
    );
    let deep = format!("/{}a{}/", "(".repeat(40), ")".repeat(40));
    let triggers = json!([{"_type": "generic_webhook", "source": "s", "not": {"$.a": deep}}]);
    let err = parse_and_validate(&lock(vec![job(json!({}))], triggers)).expect_err("deep");
    assert!(err.to_string().contains("nests 40 levels deep"), "{err}");
}
