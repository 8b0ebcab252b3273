//! The failed-only rerun's first wave (`wave_of`), as a table of previous runs.

use std::collections::BTreeMap;

use super::*;
use crate::runs::state::JobStatus::{self, *};

fn edge(job: &str, upstream: &str, run_on: &[JobStatus]) -> NeedsEdge {
    NeedsEdge {
        job: job.into(),
        upstream: upstream.into(),
        run_on: run_on.to_vec(),
    }
}

fn previous(jobs: &[(&str, JobStatus)]) -> PreviousJobs {
    PreviousJobs {
        run_id: "r1".into(),
        statuses: jobs.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect(),
    }
}

fn ended(w: &Wave) -> BTreeMap<&str, JobStatus> {
    w.1.iter().map(|(n, (s, _))| (n.as_str(), *s)).collect()
}

#[test]
fn failed_jobs_and_their_downstream_run_again_and_the_rest_is_kept() {
    // lint ─┐
    // unit ─┴─ deploy      unit failed: unit runs again, deploy with it; lint is kept.
    let needs = [
        edge("deploy", "lint", &[Success]),
        edge("deploy", "unit", &[Success]),
    ];
    let prev = previous(&[("lint", Success), ("unit", Failed), ("deploy", Skipped)]);
    let w = wave_of(&["lint", "unit", "deploy"], &needs, &prev);
    assert_eq!(w.0, ["unit"]);
    assert_eq!(ended(&w), BTreeMap::from([("lint", Success)]));
    assert!(
        w.1["lint"].1.contains("passed in run r1"),
        "{}",
        w.1["lint"].1
    );
}

#[test]
fn a_passed_job_downstream_of_a_failed_one_runs_again() {
    let needs = [
        edge("b", "a", &[Success, Failed]),
        edge("c", "b", &[Success]),
    ];
    let prev = previous(&[("a", Failed), ("b", Success), ("c", Success)]);
    let w = wave_of(&["a", "b", "c"], &needs, &prev);
    assert_eq!(w.0, ["a"]);
    assert!(w.1.is_empty(), "{:?}", w.1);
}

#[test]
fn cancelled_timed_out_and_new_jobs_run_again() {
    let prev = previous(&[("a", Cancelled), ("b", TimedOutStale), ("c", Success)]);
    let w = wave_of(&["a", "b", "c", "new"], &[], &prev);
    assert_eq!(w.0, ["a", "b", "new"]);
    assert_eq!(ended(&w), BTreeMap::from([("c", Success)]));
}

#[test]
fn a_job_whose_needs_cannot_hold_against_a_kept_job_is_skipped_at_once() {
    // cleanup runs only when build fails; build passed and is kept, so cleanup is skipped.
    let needs = [
        edge("cleanup", "build", &[Failed]),
        edge("report", "test", &[Success]),
    ];
    let prev = previous(&[
        ("build", Success),
        ("cleanup", Skipped),
        ("test", Failed),
        ("report", Skipped),
    ]);
    let w = wave_of(&["build", "cleanup", "test", "report"], &needs, &prev);
    assert_eq!(w.0, ["test"]);
    assert_eq!(
        ended(&w),
        BTreeMap::from([("build", Success), ("cleanup", Skipped)])
    );
}

#[test]
fn nothing_ready_when_every_job_to_run_again_is_doomed() {
    let needs = [edge("cleanup", "build", &[Failed])];
    let prev = previous(&[("build", Success), ("cleanup", Skipped)]);
    let w = wave_of(&["build", "cleanup"], &needs, &prev);
    assert!(w.0.is_empty());
}
