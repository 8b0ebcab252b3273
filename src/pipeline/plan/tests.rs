//! Planning: matrix expansion and naming, label routing, needs edges, readiness cascades.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::pipeline::lockfile::parse_and_validate;
use crate::runs::state::JobStatus as S;

/// The default `KICI_MAX_JOBS_PER_RUN`.
const MAX: usize = crate::pipeline::limits::DEFAULT_JOBS_PER_RUN;

fn job(name: &str, extra: Value) -> Value {
    let mut j = json!({"_type": "static", "name": name, "runsOn": [{"kind": "exact", "value": "linux"}], "needs": [], "steps": []});
    if let (Some(j), Some(e)) = (j.as_object_mut(), extra.as_object()) {
        j.extend(e.clone());
    }
    j
}

fn workflow(jobs: Vec<Value>) -> LockWorkflow {
    let bytes = serde_json::to_vec(
        &json!({"schemaVersion": 29, "workflows": [{"name": "ci", "triggers": [], "jobs": jobs}]}),
    )
    .expect("json");
    parse_and_validate(&bytes)
        .expect("valid lock")
        .workflows
        .remove(0)
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.jobs.iter().map(|j| j.name.as_str()).collect()
}

#[test]
fn matrix_cross_product_with_sorted_dimension_names() {
    let wf = workflow(vec![job(
        "test",
        json!({"matrix": {"_type": "static", "values": {"os": ["linux", "mac"], "node": ["20", "22"]}}}),
    )]);
    let plan = plan_workflow(&wf, MAX).expect("plan");
    assert_eq!(
        names(&plan),
        [
            "test (20, linux)",
            "test (20, mac)",
            "test (22, linux)",
            "test (22, mac)"
        ]
    );
    let first = &plan.jobs[0];
    assert_eq!(first.base_name, "test");
    assert_eq!(
        first.matrix_values.as_ref().map(|m| m["os"].as_str()),
        Some("linux")
    );
}

#[test]
fn array_matrix_is_one_dimension_named_value() {
    let wf = workflow(vec![job(
        "lint",
        json!({"matrix": {"_type": "static", "values": ["a", "b"]}}),
    )]);
    let plan = plan_workflow(&wf, MAX).expect("plan");
    assert_eq!(names(&plan), ["lint (a)", "lint (b)"]);
    assert_eq!(
        plan.jobs[1]
            .matrix_values
            .as_ref()
            .map(|m| m["value"].as_str()),
        Some("b")
    );
}

#[test]
fn exclude_then_include() {
    let wf = workflow(vec![job(
        "t",
        json!({
            "matrix": {"_type": "static", "values": {"os": ["linux", "mac"], "v": ["1", "2"]}},
            "exclude": [{"os": "mac", "v": "1"}, {}, {"os": "windows"}],
            "include": [{"os": "windows", "v": "3"}, {"os": "linux", "v": "1"}]
        }),
    )]);
    let plan = plan_workflow(&wf, MAX).expect("plan");
    assert_eq!(names(&plan), ["t (linux, 1)", "t (linux, 2)", "t (mac, 2)", "t (windows, 3)"],
        "partial exclude matches only when all keys equal; {{}} matches nothing; include adds only new combos");
}

#[test]
fn matrices_that_cannot_run_are_errors() {
    let empty = workflow(vec![job(
        "t",
        json!({"matrix": {"_type": "static", "values": {"os": []}}}),
    )]);
    assert!(plan_workflow(&empty, MAX)
        .expect_err("empty dim")
        .to_string()
        .contains("no values"));
    let all_out = workflow(vec![job(
        "t",
        json!({"matrix": {"_type": "static", "values": ["a"]}, "exclude": [{"value": "a"}]}),
    )]);
    assert!(plan_workflow(&all_out, MAX).is_err());
}

#[test]
fn label_routing_splits_exact_and_regex() {
    let wf = workflow(vec![job(
        "b",
        json!({
            "runsOn": [{"kind": "exact", "value": "linux"}, {"kind": "regex", "source": "^gpu-", "flags": "i"}],
            "excludeLabels": [{"kind": "exact", "value": "slow"}, {"kind": "regex", "source": "arm$", "flags": ""}]
        }),
    )]);
    let j = &plan_workflow(&wf, MAX).expect("plan").jobs[0];
    assert_eq!(j.runs_on_labels, ["linux"]);
    assert_eq!(
        j.runs_on_patterns,
        [LabelPattern {
            source: "^gpu-".into(),
            flags: "i".into()
        }]
    );
    assert_eq!(j.exclude_labels, ["slow"]);
    assert_eq!(
        j.exclude_patterns,
        [LabelPattern {
            source: "arm$".into(),
            flags: "".into()
        }]
    );
}

#[test]
fn needs_edges_reach_every_matrix_child_with_run_on() {
    let wf = workflow(vec![
        job(
            "build",
            json!({"matrix": {"_type": "static", "values": ["x", "y"]}}),
        ),
        job("deploy", json!({"needs": ["build"]})),
        job(
            "report",
            json!({"needs": [{"name": "deploy", "runOn": "always"}]}),
        ),
        job(
            "cleanup",
            json!({"needs": [{"name": "deploy", "runOn": ["on-failure", "cancelled"]}]}),
        ),
    ]);
    let plan = plan_workflow(&wf, MAX).expect("plan");
    let edges: Vec<(&str, &str)> = plan
        .needs
        .iter()
        .map(|e| (e.job.as_str(), e.upstream.as_str()))
        .collect();
    assert_eq!(
        edges,
        [
            ("deploy", "build (x)"),
            ("deploy", "build (y)"),
            ("report", "deploy"),
            ("cleanup", "deploy")
        ]
    );
    assert_eq!(plan.needs[0].run_on, [S::Success]);
    assert_eq!(
        plan.needs[2].run_on.len(),
        6,
        "always = every terminal status"
    );
    assert_eq!(
        plan.needs[3].run_on,
        [S::Failed, S::Cancelled, S::TimedOutStale]
    );
}

#[test]
fn run_on_keywords() {
    assert_eq!(parse_run_on(None), Ok(vec![S::Success]));
    assert_eq!(
        parse_run_on(Some(&json!("on-skip"))),
        Ok(vec![S::Success, S::Skipped])
    );
    assert_eq!(
        parse_run_on(Some(&json!(["on-failure"]))),
        Ok(vec![S::Failed, S::TimedOutStale])
    );
    assert!(
        parse_run_on(Some(&json!(["running"]))).is_err(),
        "not terminal"
    );
    assert!(parse_run_on(Some(&json!(["sometimes"]))).is_err());
}

#[test]
fn bad_needs_are_errors() {
    let unknown = workflow(vec![job("a", json!({"needs": ["ghost"]}))]);
    assert!(plan_workflow(&unknown, MAX)
        .expect_err("unknown")
        .to_string()
        .contains("\"ghost\""));
    let cycle = workflow(vec![
        job("a", json!({"needs": ["b"]})),
        job("b", json!({"needs": ["a"]})),
    ]);
    assert!(plan_workflow(&cycle, MAX)
        .expect_err("cycle")
        .to_string()
        .contains("cycle"));
    let dup = workflow(vec![job("a", json!({})), job("a", json!({}))]);
    assert!(plan_workflow(&dup, MAX).is_err());
}

fn statuses(list: &[(&str, S)]) -> BTreeMap<String, S> {
    list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

fn edge(job: &str, up: &str, run_on: &[S]) -> NeedsEdge {
    NeedsEdge {
        job: job.into(),
        upstream: up.into(),
        run_on: run_on.to_vec(),
    }
}

#[test]
fn roots_are_ready_and_downstreams_wait() {
    let needs = [edge("b", "a", &[S::Success])];
    let r = readiness(&needs, &statuses(&[("a", S::Pending), ("b", S::Pending)]));
    assert_eq!(
        r,
        Readiness {
            ready: vec!["a".into()],
            skipped: vec![]
        }
    );
    let r = readiness(&needs, &statuses(&[("a", S::Running), ("b", S::Pending)]));
    assert_eq!(r, Readiness::default());
    let r = readiness(&needs, &statuses(&[("a", S::Success), ("b", S::Pending)]));
    assert_eq!(r.ready, ["b"]);
}

#[test]
fn a_failed_upstream_skips_the_whole_chain_at_once() {
    // a → b → c → d, and e needs d with `always`: all decided in one evaluation
    let needs = [
        edge("b", "a", &[S::Success]),
        edge("c", "b", &[S::Success]),
        edge("d", "c", &[S::Success]),
        edge(
            "e",
            "d",
            &[
                S::Success,
                S::Failed,
                S::Cancelled,
                S::Skipped,
                S::TimedOutStale,
                S::DriftDropped,
            ],
        ),
    ];
    let st = statuses(&[
        ("a", S::Failed),
        ("b", S::Pending),
        ("c", S::Pending),
        ("d", S::Pending),
        ("e", S::Pending),
    ]);
    let r = readiness(&needs, &st);
    assert_eq!(r.skipped, ["b", "c", "d"]);
    assert_eq!(r.ready, ["e"], "always runs after a skipped upstream");
}

#[test]
fn one_doomed_edge_skips_without_waiting_for_the_others() {
    let needs = [edge("c", "a", &[S::Success]), edge("c", "b", &[S::Success])];
    let r = readiness(
        &needs,
        &statuses(&[("a", S::Failed), ("b", S::Running), ("c", S::Pending)]),
    );
    assert_eq!(
        r.skipped,
        ["c"],
        "a failed within milliseconds while b still runs"
    );
}

#[test]
fn on_failure_and_on_skip_edges() {
    let needs = [
        edge("notify", "build", &[S::Failed, S::TimedOutStale]),
        edge("after", "maybe", &[S::Success, S::Skipped]),
    ];
    let st = statuses(&[
        ("build", S::Success),
        ("notify", S::Pending),
        ("maybe", S::Skipped),
        ("after", S::Pending),
    ]);
    let r = readiness(&needs, &st);
    assert_eq!(r.skipped, ["notify"]);
    assert_eq!(r.ready, ["after"]);
    let st = statuses(&[("build", S::TimedOutStale), ("notify", S::Pending)]);
    assert_eq!(readiness(&needs[..1], &st).ready, ["notify"]);
}

#[test]
fn only_pending_jobs_are_considered() {
    let r = readiness(
        &[],
        &statuses(&[("a", S::Queued), ("b", S::Success), ("c", S::Pending)]),
    );
    assert_eq!(r.ready, ["c"]);
}

#[test]
fn planned_needs_drive_readiness_end_to_end() {
    let wf = workflow(vec![
        job(
            "build",
            json!({"matrix": {"_type": "static", "values": ["x", "y"]}}),
        ),
        job("deploy", json!({"needs": ["build"]})),
    ]);
    let plan = plan_workflow(&wf, MAX).expect("plan");
    let mut st: BTreeMap<String, S> = plan
        .jobs
        .iter()
        .map(|j| (j.name.clone(), S::Pending))
        .collect();
    assert_eq!(
        readiness(&plan.needs, &st).ready,
        ["build (x)", "build (y)"]
    );
    st.insert("build (x)".into(), S::Success);
    st.insert("build (y)".into(), S::Running);
    assert_eq!(readiness(&plan.needs, &st), Readiness::default());
    st.insert("build (y)".into(), S::Success);
    assert_eq!(readiness(&plan.needs, &st).ready, ["deploy"]);
}

fn matrix_job(name: &str, dims: usize, values: usize, includes: usize) -> Value {
    let dim: Vec<String> = (0..values).map(|v| format!("v{v}")).collect();
    let values: serde_json::Map<String, Value> =
        (0..dims).map(|d| (format!("d{d}"), json!(dim))).collect();
    let include: Vec<Value> = (0..includes)
        .map(|i| json!({"extra": format!("i{i}")}))
        .collect();
    job(
        name,
        json!({"matrix": {"_type": "static", "values": values}, "include": include}),
    )
}

#[test]
fn jobs_at_the_limit_are_planned_one_more_is_refused() {
    let at = workflow(vec![matrix_job("build", 2, 16, 0)]);
    assert_eq!(plan_workflow(&at, MAX).expect("256 jobs").jobs.len(), 256);
    let over = workflow(vec![matrix_job("build", 2, 16, 1)]);
    let err = plan_workflow(&over, MAX).expect_err("257").to_string();
    assert!(
        err.contains(
            "job \"build\": the matrix would create 257 jobs, more than KICI_MAX_JOBS_PER_RUN (256)"
        ),
        "{err}"
    );
    // the bound is the run's: two halves and one plain job are one too many
    let split = workflow(vec![
        matrix_job("a", 1, 128, 0),
        matrix_job("b", 1, 128, 0),
        job("c", json!({})),
    ]);
    let err = plan_workflow(&split, MAX).expect_err("257").to_string();
    assert!(
        err.contains("its jobs would create 257 jobs, more than KICI_MAX_JOBS_PER_RUN (256)"),
        "{err}"
    );
    assert_eq!(
        plan_workflow(&split, 257).expect("configured").jobs.len(),
        257
    );
}

#[test]
fn a_huge_matrix_is_refused_before_it_is_expanded() {
    // eight dimensions of ten values: 10^8 combinations, never built
    let wf = workflow(vec![matrix_job("build", 8, 10, 0)]);
    let started = std::time::Instant::now();
    let err = plan_workflow(&wf, MAX).expect_err("10^8").to_string();
    assert!(started.elapsed().as_secs() < 2, "refused without expanding");
    assert!(
        err.contains(
            "the matrix would create 100000000 jobs, more than KICI_MAX_JOBS_PER_RUN (256)"
        ),
        "{err}"
    );
    // 40 dimensions of ten overflow usize: the count saturates instead of wrapping to a small one
    let wf = workflow(vec![matrix_job("build", 40, 10, 0)]);
    let err = plan_workflow(&wf, MAX).expect_err("10^40").to_string();
    assert!(
        err.contains(&format!("create {} jobs", usize::MAX)),
        "{err}"
    );
}
