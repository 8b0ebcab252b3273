//! Run events: every lifecycle effect (`super::lifecycle::Effect`: a job claimed, started or
//! ended, a step changed, a run started or ended), as published to subscribers once it is
//! committed. The Platform status forwarder is the first subscriber (wired in src/daemon.rs);
//! the GitHub check reporter, metrics and log streaming subscribe the same way.
//!
//! Ordering: [`Events::publish`] calls every subscriber synchronously on the publishing thread,
//! in subscription order, and one change's events are published in the order of its effects
//! (a job's end before the downstream jobs it queued or skipped, before the run's end). A job's
//! starts and ends are serialized by the run's row lock when they are written; a claim is
//! published before its `job.dispatch` frame is sent, so before anything its agent reports; a
//! job's steps are reported, written and published by its agent's one session, in order.
//! Publishing follows the commit, under one lock here, so subscribers never see two events at
//! once. Two changes of one run committed by different threads within microseconds may be
//! published in either order; a subscriber that needs the latest state reads it (the forwarder
//! reads the row). Without subscribers, publishing returns at once.

use std::sync::{Mutex, RwLock};

use serde_json::Value;

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The run was recorded, changed status, or ended (`status` as stored: `pending`,
    /// `running`, `cancelling`, `success`, `failed`, `cancelled`).
    Run { status: String },
    /// A job was claimed for (dispatched to) an agent: it is held by `agent_id` now. Its status
    /// did not change (still `pending`); published before the `job.dispatch` frame is sent.
    Claimed {
        job_id: String,
        job_name: String,
        agent_id: String,
    },
    /// A job changed status (`running`, `cancelling`, or a terminal status).
    Job {
        job_id: String,
        job_name: String,
        status: String,
    },
    /// A step of a job changed (the agent's `step.status` fields as sent); a replay, or a report
    /// about a finished step, is not a change.
    Step {
        job_id: String,
        job_name: String,
        step: Value,
    },
}

/// One event of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub run_id: String,
    /// When it was published, in milliseconds since the epoch.
    pub at_ms: i64,
    pub change: Change,
}

impl RunEvent {
    pub fn run(run_id: &str, status: &str, at_ms: i64) -> RunEvent {
        RunEvent {
            run_id: run_id.to_owned(),
            at_ms,
            change: Change::Run {
                status: status.to_owned(),
            },
        }
    }

    pub fn job(run_id: &str, job_id: &str, job_name: &str, status: &str, at_ms: i64) -> RunEvent {
        RunEvent {
            run_id: run_id.to_owned(),
            at_ms,
            change: Change::Job {
                job_id: job_id.to_owned(),
                job_name: job_name.to_owned(),
                status: status.to_owned(),
            },
        }
    }
}

type Subscriber = Box<dyn Fn(&RunEvent) + Send + Sync>;

/// The publisher.
#[derive(Default)]
pub struct Events {
    subscribers: RwLock<Vec<Subscriber>>,
    publishing: Mutex<()>,
}

impl Events {
    /// Adds a subscriber; it sees every event published from now on.
    pub fn subscribe(&self, f: Box<dyn Fn(&RunEvent) + Send + Sync>) {
        self.subscribers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(f);
    }

    /// Hands `events` to every subscriber, in order.
    pub fn publish(&self, events: &[RunEvent]) {
        let nobody = || {
            self.subscribers
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        };
        if events.is_empty() || nobody() {
            return;
        }
        let _one_at_a_time = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let subscribers = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        for event in events {
            for s in subscribers.iter() {
                s(event);
            }
        }
    }

    pub fn publish_one(&self, event: RunEvent) {
        self.publish(std::slice::from_ref(&event));
    }
}

/// Milliseconds since the epoch, now (for events published at the edges).
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_subscriber_sees_every_event_in_order() {
        let events = Events::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for who in ["a", "b"] {
            let seen = seen.clone();
            events.subscribe(Box::new(move |e: &RunEvent| {
                let what = match &e.change {
                    Change::Run { status } => format!("run {status}"),
                    Change::Job {
                        job_name, status, ..
                    } => format!("{job_name} {status}"),
                    Change::Step { .. } => "step".into(),
                    Change::Claimed { .. } => "claimed".into(),
                };
                seen.lock().unwrap().push(format!("{who}: {what}"));
            }));
        }
        events.publish(&[
            RunEvent::job("r", "j1", "build", "failed", 1),
            RunEvent::job("r", "j2", "test", "skipped", 1),
            RunEvent::run("r", "failed", 1),
        ]);
        events.publish(&[]);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "a: build failed",
                "b: build failed",
                "a: test skipped",
                "b: test skipped",
                "a: run failed",
                "b: run failed"
            ]
        );
    }
}
