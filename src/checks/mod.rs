//! GitHub check runs for every run of a GitHub source (docs/check-runs.md): `kici/<workflow>`
//! for the run and `kici/<workflow>/job/<job>` for each job, created `queued`, then
//! `in_progress` with the step list, then `completed` with a conclusion and a summary of what
//! failed.
//!
//! - `render`: pure; a run's rows → what each check run should say ([`render::CheckState`]).
//! - `retry`: pure; GitHub's answers → done, retry, rate limited, missing permission.
//! - `store`: the database side (migrations/0008_check_reports.sql).
//! - `reporter`: the one reporter thread; the only code here that talks to GitHub (through
//!   `crate::github::checks`).
//!
//! Never blocking: the run-events subscriber ([`subscriber`]) only notes the run id and wakes
//! the reporter ([`Wake`]); everything else happens on the reporter's thread. Never losing: the
//! reporter derives each check run's state from the durable runs/jobs/steps rows and remembers
//! in `check_reports` what GitHub accepted, so after a restart or an outage it sends what is
//! missing (its sweep finds every GitHub run not yet settled).

pub mod render;
pub mod reporter;
pub mod retry;
pub mod store;

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Condvar, Mutex},
    time::Duration,
};

use crate::runs::events::RunEvent;

/// How many runs [`Wake::reports_nowhere`] remembers.
pub const NOWHERE_MAX: usize = 10_000;

/// Runs with news for the reporter, and the signal that there are some.
#[derive(Default)]
pub struct Wake {
    dirty: Mutex<BTreeSet<String>>,
    /// Runs this process started for sources that report nowhere (see [`Wake::reports_nowhere`]).
    nowhere: Mutex<HashSet<String>>,
    signal: Condvar,
    /// Routing keys whose App was just granted new permissions (see [`Wake::unpark`]).
    unparked: Mutex<BTreeSet<String>>,
}

impl Wake {
    /// Notes that `run_id` changed (no I/O: called on the publishing thread).
    pub fn poke(&self, run_id: &str) {
        if self
            .nowhere
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(run_id)
        {
            return;
        }
        let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
        if dirty.insert(run_id.to_owned()) && dirty.len() == 1 {
            self.signal.notify_one();
        }
    }

    /// `run_id` belongs to a generic or local source: its events no longer wake the reporter.
    /// Told by the pipeline before a run it starts is published, and by the reporter after one
    /// read of a run started elsewhere (another orchestrator). Bounded: past [`NOWHERE_MAX`]
    /// runs the set starts again (a forgotten run costs the reporter one read).
    pub fn reports_nowhere(&self, run_id: &str) {
        let mut nowhere = self.nowhere.lock().unwrap_or_else(|p| p.into_inner());
        if nowhere.len() >= NOWHERE_MAX {
            nowhere.clear();
        }
        nowhere.insert(run_id.to_owned());
    }

    /// The installation behind `routing_key` accepted new permissions (GitHub's `installation`
    /// webhook, action `new_permissions_accepted`): reports parked for a missing `checks: write`
    /// are tried again now instead of after the park.
    pub fn unpark(&self, routing_key: &str) {
        self.unparked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(routing_key.to_owned());
        // Under the runs' lock, so a reporter about to wait sees it (the wait re-checks).
        let _dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
        self.signal.notify_one();
    }

    fn unparked_is_empty(&self) -> bool {
        self.unparked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The routing keys unparked since the last call (emptied).
    pub fn take_unparked(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.unparked.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The runs noted so far (emptied), waiting up to `timeout` for one (or an unparked source)
    /// when there are none.
    pub fn take(&self, timeout: Duration) -> BTreeSet<String> {
        let deadline = std::time::Instant::now() + timeout;
        let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
        while dirty.is_empty() && self.unparked_is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            dirty = self
                .signal
                .wait_timeout(dirty, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        std::mem::take(&mut *dirty)
    }
}

/// The run-events subscriber: every event of a run wakes the reporter for that run.
pub fn subscriber(wake: std::sync::Arc<Wake>) -> Box<dyn Fn(&RunEvent) + Send + Sync> {
    Box::new(move |event: &RunEvent| wake.poke(&event.run_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::events::{Events, RunEvent};
    use std::{sync::Arc, time::Instant};

    #[test]
    fn events_wake_the_reporter_once_per_run() {
        let wake = Arc::new(Wake::default());
        let events = Events::default();
        events.subscribe(subscriber(wake.clone()));
        let turn = events.turn("r1");
        events.publish(
            &turn,
            &[
                RunEvent::run("r1", "pending", 1),
                RunEvent::job("r1", "j", "build", "running", 2),
            ],
        );
        drop(turn);
        let turn = events.turn("r2");
        events.publish_one(&turn, RunEvent::run("r2", "pending", 1));
        drop(turn);
        let got: Vec<String> = wake.take(Duration::ZERO).into_iter().collect();
        assert_eq!(got, ["r1", "r2"]);
        let t0 = Instant::now();
        assert!(wake.take(Duration::from_millis(50)).is_empty());
        assert!(t0.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn a_poke_ends_the_wait() {
        let wake = Arc::new(Wake::default());
        let w = wake.clone();
        let t = std::thread::spawn(move || w.take(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(30));
        wake.poke("r");
        let got = t.join().unwrap();
        assert!(got.contains("r"));
    }

    #[test]
    fn runs_that_report_nowhere_do_not_wake_the_reporter() {
        let wake = Wake::default();
        wake.reports_nowhere("local-run");
        wake.poke("local-run");
        wake.poke("github-run");
        let got: Vec<String> = wake.take(Duration::ZERO).into_iter().collect();
        assert_eq!(got, ["github-run"]);
        // Bounded: once full it starts again, and a forgotten run simply wakes the reporter.
        for i in 0..NOWHERE_MAX {
            wake.reports_nowhere(&format!("r{i}"));
        }
        wake.reports_nowhere("last");
        wake.poke("local-run");
        wake.poke("last");
        let got: Vec<String> = wake.take(Duration::ZERO).into_iter().collect();
        assert_eq!(got, ["local-run"]);
    }

    #[test]
    fn an_unparked_source_ends_the_wait_and_is_taken_once() {
        let wake = Arc::new(Wake::default());
        let w = wake.clone();
        let t0 = Instant::now();
        let t = std::thread::spawn(move || w.take(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(30));
        wake.unpark("github:8888");
        assert!(t.join().unwrap().is_empty());
        assert!(t0.elapsed() < Duration::from_secs(5));
        let keys: Vec<String> = wake.take_unparked().into_iter().collect();
        assert_eq!(keys, ["github:8888"]);
        assert!(wake.take_unparked().is_empty());
    }
}
