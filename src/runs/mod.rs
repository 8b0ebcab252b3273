//! Runs, their jobs and steps, the `needs` graph and the job queue, in one place
//! (docs/architecture.md, "Runs and run events"). The pipeline produces plans and asks this module
//! to create the runs; the agent link claims queued jobs and reports what agents say through it;
//! neither knows the other.
//!
//! - `state`: the job state machine and the run-status aggregation (pure);
//! - `needs`: the `needs` edges and which waiting jobs are ready or doomed (pure);
//! - `lifecycle`: `(run state, event) → effects`, the one place that decides (pure);
//! - `requirements`: which agent may take which queued job (pure);
//! - `credentials`: the credential reference a queued job carries, and who mints it;
//! - `failure`: why a step or job failed, read from the agent's frames (pure);
//! - `events`: every committed effect published to subscribers (the Platform forwarder first);
//! - `store`: the SQL.

pub mod credentials;
pub mod events;
pub mod failure;
pub mod lifecycle;
pub mod needs;
pub mod requirements;
pub mod state;
pub mod store;

use std::sync::Arc;

use events::{now_ms, Change, RunEvent};
use lifecycle::Effect;
use store::jobs::Outcome;

/// Wakes the dispatcher after jobs were queued (handed to the pipeline by the daemon, so the
/// pipeline needs nothing of the agent link).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The events of a committed change, in effect order (`Queue` and `Skip` effects publish
/// nothing: a queued job's status is still `pending`, a skipped one's end follows).
pub fn events_of(outcome: &Outcome, at_ms: i64) -> Vec<RunEvent> {
    let Some(run_id) = outcome.run_id.as_deref() else {
        return Vec::new();
    };
    outcome
        .effects
        .iter()
        .filter_map(|(effect, about)| {
            let job = |status: &str| {
                about
                    .as_ref()
                    .map(|(id, name)| RunEvent::job(run_id, id, name, status, at_ms))
            };
            match effect {
                Effect::JobClaimed { agent, .. } => about.as_ref().map(|(id, name)| RunEvent {
                    run_id: run_id.to_owned(),
                    at_ms,
                    change: Change::Claimed {
                        job_id: id.clone(),
                        job_name: name.clone(),
                        agent_id: agent.clone(),
                    },
                }),
                Effect::StepChanged { .. } => about.as_ref().map(|(id, name)| RunEvent {
                    run_id: run_id.to_owned(),
                    at_ms,
                    change: Change::Step {
                        job_id: id.clone(),
                        job_name: name.clone(),
                        step: outcome.report.clone().unwrap_or_default(),
                    },
                }),
                Effect::JobStarted { .. } => job("running"),
                Effect::JobEnded { status, .. } => job(status.as_str()),
                Effect::RunStarted => Some(RunEvent::run(run_id, "running", at_ms)),
                Effect::RunEnded { status } => Some(RunEvent::run(run_id, status.as_str(), at_ms)),
                Effect::Queue { .. } | Effect::Skip { .. } => None,
            }
        })
        .collect()
}

/// Publishes a committed change's events now (the caller holds the run's turn, taken before
/// the change was written: `events::Events::turn`).
pub fn publish(events: &events::Events, turn: &events::Turn<'_>, outcome: &Outcome) {
    events.publish(turn, &events_of(outcome, now_ms()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use state::{JobStatus, RunStatus};

    #[test]
    fn a_change_publishes_its_job_and_run_events_in_order() {
        let about = |id: &str, name: &str| Some((id.to_owned(), name.to_owned()));
        let outcome = Outcome {
            report: None,
            run_id: Some("r".into()),
            effects: vec![
                (
                    Effect::JobEnded {
                        job: "build".into(),
                        status: JobStatus::Failed,
                    },
                    about("j1", "build"),
                ),
                (Effect::Skip { job: "test".into() }, about("j2", "test")),
                (
                    Effect::JobEnded {
                        job: "test".into(),
                        status: JobStatus::Skipped,
                    },
                    about("j2", "test"),
                ),
                (
                    Effect::RunEnded {
                        status: RunStatus::Failed,
                    },
                    None,
                ),
            ],
        };
        let got: Vec<Change> = events_of(&outcome, 7)
            .into_iter()
            .map(|e| e.change)
            .collect();
        assert_eq!(
            got,
            [
                RunEvent::job("r", "j1", "build", "failed", 7).change,
                RunEvent::job("r", "j2", "test", "skipped", 7).change,
                RunEvent::run("r", "failed", 7).change,
            ]
        );
        assert!(events_of(&Outcome::default(), 7).is_empty());
    }

    #[test]
    fn a_claim_and_a_step_change_publish_their_events() {
        let about = Some(("j1".to_owned(), "build".to_owned()));
        let claim = Outcome {
            run_id: Some("r".into()),
            effects: vec![(
                Effect::JobClaimed {
                    job: "build".into(),
                    agent: "agent-1".into(),
                },
                about.clone(),
            )],
            report: None,
        };
        let frame = serde_json::json!({"stepIndex": 0, "state": "success"});
        let step = Outcome {
            run_id: Some("r".into()),
            effects: vec![(
                Effect::StepChanged {
                    job: "build".into(),
                    step: 0,
                    status: "success".into(),
                },
                about,
            )],
            report: Some(frame.clone()),
        };
        let got: Vec<Change> = [claim, step]
            .iter()
            .flat_map(|o| events_of(o, 7))
            .map(|e| e.change)
            .collect();
        assert_eq!(
            got,
            [
                Change::Claimed {
                    job_id: "j1".into(),
                    job_name: "build".into(),
                    agent_id: "agent-1".into(),
                },
                Change::Step {
                    job_id: "j1".into(),
                    job_name: "build".into(),
                    step: frame,
                },
            ]
        );
    }
}
