//! Which pending jobs of a run can be dispatched now, and which will never run.
//!
//! A job is ready when every upstream is terminal in a status its edge accepts; it is skipped
//! as soon as one upstream is terminal in a status its edge does not accept (terminal statuses
//! never change, so waiting for the others would change nothing). Skips cascade within one call:
//! the decision never depends on the order or timing of upstream reports — the reference left
//! downstream jobs `pending` forever when an upstream failed within milliseconds of dispatch.

use std::collections::BTreeMap;

use serde::Serialize;

use super::state::JobStatus;

/// One `execution_job_needs` row: `job` waits for `upstream`, and runs only if the upstream
/// ends in one of `run_on`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NeedsEdge {
    pub job: String,
    pub upstream: String,
    pub run_on: Vec<JobStatus>,
}

/// `run_on` statuses as stored in `execution_job_needs.run_on` (comma-separated).
pub fn run_on_text(run_on: &[JobStatus]) -> String {
    run_on
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The stored `run_on` back as statuses; unknown spellings are dropped.
pub fn parse_run_on(text: &str) -> Vec<JobStatus> {
    text.split(',').filter_map(JobStatus::parse).collect()
}

/// The outcome of one evaluation; both lists are sorted by job name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Pending jobs whose conditions all hold: enqueue them.
    pub ready: Vec<String>,
    /// Pending jobs that can never run: mark them `skipped`.
    pub skipped: Vec<String>,
}

/// Evaluates every `pending` job in `statuses` against `needs`. Call it after creating a run
/// (the roots come back ready) and whenever a job of the run reaches a terminal status.
/// An edge whose upstream is missing from `statuses` is never satisfied.
pub fn readiness(needs: &[NeedsEdge], statuses: &BTreeMap<String, JobStatus>) -> Readiness {
    let mut current = statuses.clone();
    let mut out = Readiness::default();
    loop {
        let mut changed = false;
        for (job, status) in statuses {
            if *status != JobStatus::Pending || current.get(job) != Some(&JobStatus::Pending) {
                continue;
            }
            let mut all_met = true;
            let mut doomed = false;
            for edge in needs.iter().filter(|e| &e.job == job) {
                match current.get(&edge.upstream) {
                    Some(up) if up.is_terminal() => {
                        if !edge.run_on.contains(up) {
                            doomed = true;
                        }
                    }
                    _ => all_met = false,
                }
            }
            if doomed {
                current.insert(job.clone(), JobStatus::Skipped);
                out.skipped.push(job.clone());
                changed = true;
            } else if all_met {
                // ready is not terminal: it does not unblock anything in this pass
                current.insert(job.clone(), JobStatus::Queued);
                out.ready.push(job.clone());
            }
        }
        if !changed {
            break;
        }
    }
    out.ready.sort();
    out.skipped.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_on_round_trip() {
        let text = run_on_text(&[JobStatus::Success, JobStatus::Skipped]);
        assert_eq!(text, "success,skipped");
        assert_eq!(
            parse_run_on(&text),
            [JobStatus::Success, JobStatus::Skipped]
        );
    }
}
