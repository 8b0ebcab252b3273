//! Which pending jobs of a run can be dispatched now, and which will never run.
//!
//! A job is ready when every upstream is terminal in a status its edge accepts; it is skipped
//! as soon as one upstream is terminal in a status its edge does not accept (terminal statuses
//! never change, so waiting for the others would change nothing). Skips cascade within one call:
//! the decision never depends on the order or timing of upstream reports — the reference left
//! downstream jobs `pending` forever when an upstream failed within milliseconds of dispatch.

use std::collections::BTreeMap;

use super::NeedsEdge;
use crate::pipeline::state::JobStatus;

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
