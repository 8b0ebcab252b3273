//! Run events: every lifecycle effect (`super::lifecycle::Effect`: a job claimed, started or
//! ended, a step changed, a run started or ended), as published to subscribers once it is
//! committed. The Platform status forwarder is the first subscriber (wired in src/daemon.rs);
//! the GitHub check reporter, metrics and log streaming subscribe the same way.
//!
//! Ordering: [`Events::publish`] calls every subscriber synchronously on the publishing thread,
//! in subscription order, and one change's events are published in the order of its effects
//! (a job's end before the downstream jobs it queued or skipped, before the run's end). Changes
//! of one run reach subscribers in the order they were committed: a change takes its run's
//! [`Turn`] before it is written and keeps it until its events are published, and publishing
//! needs the turn. So a job queued by another job's end is never seen claimed before it is seen
//! queued, and a run's `pending` precedes its first claim. A claim takes the turn after it is
//! committed (it touches the queue row only) and is published before its `job.dispatch` frame is
//! sent, so before anything its agent reports. Turns are per run and per process (subscribers
//! are in-process; across orchestrators the database's row locks order the writes), a thread
//! holds at most one, and never while it waits for another run. Without subscribers, turns and
//! publishing cost nothing.

use std::{
    collections::HashSet,
    sync::{Condvar, Mutex, RwLock},
};

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
    /// Runs whose turn is taken, and the signal that one was passed on.
    turns: Mutex<HashSet<String>>,
    turn_passed: Condvar,
}

/// A run's turn to change and publish (see the module's "Ordering"); dropping it passes the
/// turn on to the next change of that run.
#[must_use = "the turn is passed on when dropped"]
pub struct Turn<'a> {
    events: &'a Events,
    /// `None` when nobody subscribes (nothing to order).
    run_id: Option<String>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(run_id) = self.run_id.take() {
            let mut taken = self.events.turns.lock().unwrap_or_else(|p| p.into_inner());
            taken.remove(&run_id);
            self.events.turn_passed.notify_all();
        }
    }
}

impl Events {
    /// Adds a subscriber; it sees every event published from now on. Subscribe before the first
    /// change (at start-up): turns taken while nobody subscribed order nothing.
    pub fn subscribe(&self, f: Box<dyn Fn(&RunEvent) + Send + Sync>) {
        self.subscribers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(f);
    }

    fn nobody(&self) -> bool {
        self.subscribers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Waits for `run_id`'s turn: until no other change of that run is between its write and
    /// its publication.
    pub fn turn(&self, run_id: &str) -> Turn<'_> {
        if self.nobody() {
            return Turn {
                events: self,
                run_id: None,
            };
        }
        let mut taken = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        while taken.contains(run_id) {
            taken = self
                .turn_passed
                .wait(taken)
                .unwrap_or_else(|p| p.into_inner());
        }
        taken.insert(run_id.to_owned());
        Turn {
            events: self,
            run_id: Some(run_id.to_owned()),
        }
    }

    /// Hands `events` (of the run whose `turn` the caller holds) to every subscriber, in order.
    pub fn publish(&self, turn: &Turn<'_>, events: &[RunEvent]) {
        debug_assert!(
            turn.run_id.is_none()
                || events
                    .iter()
                    .all(|e| Some(&e.run_id) == turn.run_id.as_ref())
        );
        if events.is_empty() || self.nobody() {
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

    pub fn publish_one(&self, turn: &Turn<'_>, event: RunEvent) {
        self.publish(turn, std::slice::from_ref(&event));
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
        let turn = events.turn("r");
        events.publish(
            &turn,
            &[
                RunEvent::job("r", "j1", "build", "failed", 1),
                RunEvent::job("r", "j2", "test", "skipped", 1),
                RunEvent::run("r", "failed", 1),
            ],
        );
        events.publish(&turn, &[]);
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

    /// Two changes of one run: the second waits for the first's turn even when its own write
    /// would be quicker, so subscribers see them in commit order; another run does not wait.
    #[test]
    fn a_run_s_changes_are_published_in_the_order_their_turns_were_taken() {
        use std::{sync::mpsc, thread, time::Duration};
        let events = Arc::new(Events::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        events.subscribe(Box::new(move |e: &RunEvent| {
            if let Change::Job { job_name, .. } = &e.change {
                log.lock().unwrap().push(format!("{} {job_name}", e.run_id));
            }
        }));
        let first = events.turn("r");
        let (tx, rx) = mpsc::channel();
        let second = {
            let events = events.clone();
            thread::spawn(move || {
                tx.send(()).unwrap();
                let turn = events.turn("r");
                events.publish_one(&turn, RunEvent::job("r", "j2", "second", "running", 2));
            })
        };
        rx.recv().unwrap();
        // Another run's change goes through while "r" is busy.
        let other = events.turn("s");
        events.publish_one(&other, RunEvent::job("s", "j9", "other", "running", 2));
        drop(other);
        thread::sleep(Duration::from_millis(50));
        events.publish_one(&first, RunEvent::job("r", "j1", "first", "success", 1));
        drop(first);
        second.join().unwrap();
        assert_eq!(*seen.lock().unwrap(), ["s other", "r first", "r second"]);
    }

    #[test]
    fn without_subscribers_turns_are_free() {
        let events = Events::default();
        let a = events.turn("r");
        let b = events.turn("r");
        events.publish_one(&b, RunEvent::run("r", "running", 1));
        drop((a, b));
    }
}
