//! Tests of the check-run renderer: conclusions, summaries, limits.

use super::*;
use proptest::prelude::*;

fn job(name: &str, status: &str) -> JobFacts {
    JobFacts {
        job_id: format!("id-{name}"),
        name: name.into(),
        status: status.into(),
        ..JobFacts::default()
    }
}

fn run(status: &str, jobs: Vec<JobFacts>) -> RunFacts {
    RunFacts {
        run_id: "r1".into(),
        workflow: "ci".into(),
        status: status.into(),
        started_at: Some("2026-01-01T00:00:00Z".into()),
        completed_at: Some("2026-01-01T00:01:00Z".into()),
        jobs,
        ..RunFacts::default()
    }
}

#[test]
fn job_statuses_map_to_github_conclusions() {
    assert_eq!(job_outcome("success"), ("completed", Some("success")));
    assert_eq!(job_outcome("failed"), ("completed", Some("failure")));
    assert_eq!(job_outcome("drift_dropped"), ("completed", Some("failure")));
    assert_eq!(job_outcome("cancelled"), ("completed", Some("cancelled")));
    assert_eq!(job_outcome("skipped"), ("completed", Some("skipped")));
    assert_eq!(
        job_outcome("timed_out_stale"),
        ("completed", Some("timed_out"))
    );
    assert_eq!(job_outcome("running"), ("in_progress", None));
    assert_eq!(job_outcome("recovering"), ("in_progress", None));
    for s in ["pending", "queued", "waiting", "held"] {
        assert_eq!(job_outcome(s), ("queued", None), "{s}");
    }
}

#[test]
fn the_run_succeeds_only_when_every_job_passed() {
    let ok = run("success", vec![job("a", "success"), job("b", "skipped")]);
    assert_eq!(run_outcome(&ok), ("completed", Some("success")));
    let failed = run("failed", vec![job("a", "success"), job("b", "failed")]);
    assert_eq!(run_outcome(&failed), ("completed", Some("failure")));
    let cancelled = run("cancelled", vec![job("a", "cancelled")]);
    assert_eq!(run_outcome(&cancelled), ("completed", Some("cancelled")));
    let stale = run(
        "failed",
        vec![job("a", "success"), job("b", "timed_out_stale")],
    );
    assert_eq!(run_outcome(&stale), ("completed", Some("cancelled")));
    let pending = run("pending", vec![job("a", "pending")]);
    assert_eq!(run_outcome(&pending), ("queued", None));
    let started = run("pending", vec![job("a", "running")]);
    assert_eq!(run_outcome(&started), ("in_progress", None));
    assert_eq!(
        run_outcome(&run(
            "running",
            vec![job("a", "success"), job("b", "pending")]
        )),
        ("in_progress", None)
    );
}

#[test]
fn names_titles_and_order() {
    let states = desired(&run(
        "running",
        vec![job("build (20)", "running"), job("lint", "pending")],
    ));
    let names: Vec<&str> = states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["kici/ci", "kici/ci/job/build (20)", "kici/ci/job/lint"]
    );
    assert_eq!(states[0].title, "KiCI: ci");
    assert_eq!(states[1].title, "KiCI: ci/build (20)");
    assert_eq!(states[0].key, RUN_KEY);
    assert_eq!(states[1].key, "id-build (20)");
    assert_eq!(states[2].status, "queued");
}

#[test]
fn a_failed_job_names_its_step_exit_code_and_last_lines() {
    let mut j = job("build", "failed");
    j.steps = vec![
        StepFacts {
            index: 0,
            name: "checkout".into(),
            status: "success".into(),
            ..Default::default()
        },
        StepFacts {
            index: 1,
            name: "make".into(),
            status: "failed".into(),
            exit_code: Some(3),
            error: Some("make failed\nmore".into()),
        },
    ];
    j.failed_log = (0..25).map(|i| format!("line {i}")).collect();
    let state = &desired(&run("failed", vec![j]))[1];
    assert_eq!(state.conclusion, Some("failure"));
    assert!(
        state
            .summary
            .starts_with("Step `make` failed with exit code 3: make failed\n"),
        "{}",
        state.summary
    );
    assert!(
        state.summary.contains("- ❌ 2. `make` (exit code 3)"),
        "{}",
        state.summary
    );
    assert!(state.summary.contains("Last 20 line(s) of its log:"));
    assert!(state.summary.contains("line 5\n") && !state.summary.contains("line 4\n"));
    assert!(state.summary.ends_with("line 24\n```"), "{}", state.summary);
}

#[test]
fn a_log_line_with_backticks_cannot_close_the_block() {
    let mut j = job("build", "failed");
    j.failed_log = vec!["````` oops".into()];
    let summary = &desired(&run("failed", vec![j]))[1].summary;
    assert!(summary.contains("``````\n````` oops\n``````"), "{summary}");
}

#[test]
fn summaries_stay_within_githubs_limit() {
    let jobs: Vec<JobFacts> = (0..3000)
        .map(|i| {
            let mut j = job(&format!("job-{i}-{}", "x".repeat(40)), "failed");
            j.error = Some("e".repeat(600));
            j
        })
        .collect();
    let states = desired(&run("failed", jobs));
    assert_eq!(states[0].summary.chars().count(), MAX_OUTPUT_CHARS);
    assert!(states[0].summary.ends_with('…'));
    assert_eq!(cut("abc", 3), "abc");
    assert_eq!(cut("abcd", 3), "ab…");
    assert_eq!(cut("ééé", 2), "é…");
}

#[test]
fn bodies_carry_the_run_id_and_the_details_url_only_when_set() {
    let states = desired(&run("success", vec![job("a", "success")]));
    let body = states[0].body("r1", None);
    assert_eq!(body["external_id"], "r1");
    assert_eq!(body["conclusion"], "success");
    assert_eq!(body["completed_at"], "2026-01-01T00:01:00Z");
    assert!(body.get("details_url").is_none());
    let url = details_url(Some("https://ci.example/runs/{runId}"), "r1");
    assert_eq!(url.as_deref(), Some("https://ci.example/runs/r1"));
    assert_eq!(
        states[0].body("r1", url.as_deref())["details_url"],
        "https://ci.example/runs/r1"
    );
    let queued = desired(&run("pending", vec![job("a", "pending")]));
    let q = queued[1].body("r1", None);
    assert!(
        q.get("conclusion").is_none() && q.get("started_at").is_none(),
        "{q}"
    );
    assert_ne!(queued[1].hash(), states[1].hash());
    assert_eq!(states[1].hash(), states[1].clone().hash());
}

proptest! {
    #[test]
    fn never_panics_and_respects_the_limits(
        names in proptest::collection::vec(".{0,300}", 0..5),
        statuses in proptest::collection::vec("[a-z_]{0,16}", 0..5),
        lines in proptest::collection::vec(".{0,900}", 0..30),
        error in proptest::option::of(".{0,3000}"),
    ) {
        let jobs: Vec<JobFacts> = names.iter().zip(statuses.iter().cycle()).map(|(n, s)| {
            let mut j = job(n, s);
            j.error = error.clone();
            j.failed_log = lines.clone();
            j.steps = vec![StepFacts { index: 0, name: n.clone(), status: "failed".into(), exit_code: Some(1), error: error.clone() }];
            j
        }).collect();
        for status in ["pending", "running", "failed", "success", "cancelled", "other"] {
            for s in desired(&run(status, jobs.clone())) {
                prop_assert!(s.summary.chars().count() <= MAX_OUTPUT_CHARS);
                prop_assert!(s.title.chars().count() <= MAX_TITLE_CHARS);
                prop_assert!(s.name.chars().count() <= MAX_NAME_CHARS);
                prop_assert_eq!(s.conclusion.is_some(), s.status == "completed");
            }
        }
    }
}
