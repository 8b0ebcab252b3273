//! Never-panic properties of planning: matrices, `needs` and names all come from the lock file.

use proptest::prelude::*;

use super::{plan_workflow, readiness};
use crate::pipeline::lockfile::{parse_and_validate, props::plausible_lock};
use crate::runs::state::JobStatus;

proptest! {
    #![proptest_config(crate::props::config())]

    #[test]
    fn never_panics_planning(lock in plausible_lock(), max_jobs in 0usize..300) {
        let Ok(lock) = parse_and_validate(lock.to_string().as_bytes()) else {
            return Ok(());
        };
        for wf in &lock.workflows {
            if let Ok(plan) = plan_workflow(wf, max_jobs) {
                prop_assert!(plan.jobs.len() <= max_jobs);
                let pending = plan
                    .jobs
                    .iter()
                    .map(|j| (j.name.clone(), JobStatus::Pending))
                    .collect();
                readiness(&plan.needs, &pending);
            }
        }
    }
}
