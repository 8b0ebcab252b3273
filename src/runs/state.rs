//! The job state machine and run-status aggregation (docs/architecture.md, "Job and run states"),
//! in one place so every writer of `execution_jobs.status` asks the same question: may this job go
//! from here to there? Terminal states are immutable; replaying the same terminal status is a no-op
//! (agents and the Platform relay repeat themselves after reconnects).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A job's status as stored and sent on the wire (the machine's states plus the two wire-only
/// terminal statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Queued,
    Running,
    Recovering,
    Cancelling,
    Held,
    Waiting,
    Success,
    Failed,
    Cancelled,
    Skipped,
    /// Heartbeats stopped and recovery gave up (wire-only, terminal).
    TimedOutStale,
    /// The agent refused the job's workflow bundle as drifted (wire-only, terminal).
    DriftDropped,
}

impl JobStatus {
    pub const ALL: [JobStatus; 13] = [
        JobStatus::Pending,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Recovering,
        JobStatus::Cancelling,
        JobStatus::Held,
        JobStatus::Waiting,
        JobStatus::Success,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Skipped,
        JobStatus::TimedOutStale,
        JobStatus::DriftDropped,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Success
                | JobStatus::Failed
                | JobStatus::Cancelled
                | JobStatus::Skipped
                | JobStatus::TimedOutStale
                | JobStatus::DriftDropped
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Recovering => "recovering",
            JobStatus::Cancelling => "cancelling",
            JobStatus::Held => "held",
            JobStatus::Waiting => "waiting",
            JobStatus::Success => "success",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Skipped => "skipped",
            JobStatus::TimedOutStale => "timed_out_stale",
            JobStatus::DriftDropped => "drift_dropped",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a job (the machine's 16 events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobEvent {
    Enqueue,
    Cancel,
    Skip,
    Hold,
    Wait,
    Approve,
    Reject,
    Expire,
    TimerDone,
    Start,
    Fail,
    Succeed,
    CancelGraceful,
    Recover,
    CancelForce,
    Complete,
}

/// A transition the machine does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: JobStatus,
    /// The event, or the reported status for [`apply_status`].
    pub attempted: String,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from.is_terminal() {
            write!(
                f,
                "job is already {} (terminal); refusing {}",
                self.from, self.attempted
            )
        } else {
            write!(
                f,
                "job in state {} cannot take {}",
                self.from, self.attempted
            )
        }
    }
}

impl std::error::Error for IllegalTransition {}

/// The machine's 25 transitions.
fn next(from: JobStatus, event: JobEvent) -> Option<JobStatus> {
    use JobEvent as E;
    use JobStatus as S;
    Some(match (from, event) {
        (S::Pending, E::Enqueue) => S::Queued,
        (S::Pending, E::Cancel) => S::Cancelled,
        (S::Pending, E::Skip) => S::Skipped,
        (S::Pending, E::Hold) => S::Held,
        (S::Pending, E::Wait) => S::Waiting,
        (S::Held, E::Approve) => S::Queued,
        (S::Held, E::Reject | E::Expire | E::Cancel) => S::Cancelled,
        (S::Waiting, E::TimerDone) => S::Queued,
        (S::Waiting, E::Cancel) => S::Cancelled,
        (S::Queued, E::Start) => S::Running,
        (S::Queued, E::Fail) => S::Failed,
        (S::Queued, E::Cancel) => S::Cancelled,
        (S::Running, E::Succeed) => S::Success,
        (S::Running, E::Fail) => S::Failed,
        (S::Running, E::Cancel) => S::Cancelled,
        (S::Running, E::CancelGraceful) => S::Cancelling,
        (S::Running, E::Recover) => S::Recovering,
        (S::Cancelling, E::CancelForce | E::Complete) => S::Cancelled,
        (S::Cancelling, E::Fail) => S::Failed,
        (S::Recovering, E::Start) => S::Running,
        (S::Recovering, E::Fail) => S::Failed,
        (S::Recovering, E::Cancel) => S::Cancelled,
        _ => return None,
    })
}

/// The state `event` leads to from `from`. From a terminal state only an event that would lead
/// to that same state is accepted (a replay, answered with `from`).
pub fn transition(from: JobStatus, event: JobEvent) -> Result<JobStatus, IllegalTransition> {
    let illegal = || IllegalTransition {
        from,
        attempted: format!("{event:?}"),
    };
    if from.is_terminal() {
        let replay = JobStatus::ALL
            .into_iter()
            .any(|s| next(s, event) == Some(from));
        return if replay { Ok(from) } else { Err(illegal()) };
    }
    next(from, event).ok_or_else(illegal)
}

/// Whether applying a reported status changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed(JobStatus),
    /// The same status again (a replay): nothing to write.
    Unchanged,
}

/// A status reported by an agent or the reaper: allowed when some event leads there, or when it
/// is a wire-only terminal status (`timed_out_stale`, `drift_dropped`) of a live job; the same
/// status again is [`Applied::Unchanged`].
pub fn apply_status(from: JobStatus, to: JobStatus) -> Result<Applied, IllegalTransition> {
    if from == to {
        return Ok(Applied::Unchanged);
    }
    let illegal = || IllegalTransition {
        from,
        attempted: format!("status {to}"),
    };
    if from.is_terminal() {
        return Err(illegal());
    }
    let wire_only = matches!(to, JobStatus::TimedOutStale | JobStatus::DriftDropped);
    let reachable = [
        JobEvent::Enqueue,
        JobEvent::Cancel,
        JobEvent::Skip,
        JobEvent::Hold,
        JobEvent::Wait,
        JobEvent::Approve,
        JobEvent::Reject,
        JobEvent::Expire,
        JobEvent::TimerDone,
        JobEvent::Start,
        JobEvent::Fail,
        JobEvent::Succeed,
        JobEvent::CancelGraceful,
        JobEvent::Recover,
        JobEvent::CancelForce,
        JobEvent::Complete,
    ]
    .into_iter()
    .any(|e| next(from, e) == Some(to));
    if wire_only || reachable {
        Ok(Applied::Changed(to))
    } else {
        Err(illegal())
    }
}

/// A run's status (`execution_runs.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Success,
    Failed,
    Cancelled,
}

impl RunStatus {
    /// The `execution_runs.status` / wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// The terminal step statuses (`execution_steps.status`, as agents spell them): a step in one of
/// them never changes again.
pub const TERMINAL_STEP_STATUSES: [&str; 4] = ["success", "failed", "skipped", "cancelled"];

pub fn step_is_terminal(status: &str) -> bool {
    TERMINAL_STEP_STATUSES.contains(&status)
}

/// A run's status from its jobs': with every job terminal, `failed` if any job failed, timed out
/// stale or was drift dropped; else `cancelled` if any was cancelled; else `success` (skipped
/// counts as success; so does a run without jobs). Before that: `running` once any job has started,
/// else `pending`.
pub fn aggregate_run_status(statuses: &[JobStatus]) -> RunStatus {
    if statuses.iter().all(|s| s.is_terminal()) {
        let any = |wanted: &[JobStatus]| statuses.iter().any(|s| wanted.contains(s));
        if any(&[
            JobStatus::Failed,
            JobStatus::TimedOutStale,
            JobStatus::DriftDropped,
        ]) {
            return RunStatus::Failed;
        }
        if any(&[JobStatus::Cancelled]) {
            return RunStatus::Cancelled;
        }
        return RunStatus::Success;
    }
    let started = [
        JobStatus::Running,
        JobStatus::Recovering,
        JobStatus::Cancelling,
    ];
    let any_started = statuses
        .iter()
        .any(|s| started.contains(s) || s.is_terminal());
    if any_started {
        RunStatus::Running
    } else {
        RunStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::JobEvent as E;
    use super::JobStatus as S;
    use super::*;

    const EVENTS: [JobEvent; 16] = [
        E::Enqueue,
        E::Cancel,
        E::Skip,
        E::Hold,
        E::Wait,
        E::Approve,
        E::Reject,
        E::Expire,
        E::TimerDone,
        E::Start,
        E::Fail,
        E::Succeed,
        E::CancelGraceful,
        E::Recover,
        E::CancelForce,
        E::Complete,
    ];

    #[test]
    fn the_machine_has_exactly_the_25_transitions() {
        let mut legal = Vec::new();
        for from in S::ALL.into_iter().filter(|s| !s.is_terminal()) {
            for e in EVENTS {
                if let Ok(to) = transition(from, e) {
                    legal.push((from, e, to));
                }
            }
        }
        assert_eq!(legal.len(), 25, "{legal:?}");
        assert!(legal.contains(&(S::Pending, E::Enqueue, S::Queued)));
        assert!(legal.contains(&(S::Running, E::CancelGraceful, S::Cancelling)));
        assert!(legal.contains(&(S::Recovering, E::Start, S::Running)));
        assert!(legal.contains(&(S::Held, E::Expire, S::Cancelled)));
        assert!(
            transition(S::Pending, E::Start).is_err(),
            "pending must be queued first"
        );
        assert!(
            transition(S::Queued, E::Succeed).is_err(),
            "queued never succeeds directly"
        );
    }

    #[test]
    fn terminal_states_are_immutable_and_replays_are_no_ops() {
        assert_eq!(transition(S::Success, E::Succeed), Ok(S::Success));
        assert_eq!(transition(S::Failed, E::Fail), Ok(S::Failed));
        assert_eq!(transition(S::Cancelled, E::Cancel), Ok(S::Cancelled));
        let err = transition(S::Success, E::Fail).expect_err("immutable");
        assert!(err.to_string().contains("terminal"), "{err}");
        assert!(transition(S::Skipped, E::Enqueue).is_err());
        assert_eq!(apply_status(S::Success, S::Success), Ok(Applied::Unchanged));
        assert!(apply_status(S::Success, S::Failed).is_err());
        assert!(apply_status(S::Failed, S::Running).is_err());
    }

    #[test]
    fn reported_statuses() {
        assert_eq!(
            apply_status(S::Queued, S::Running),
            Ok(Applied::Changed(S::Running))
        );
        assert_eq!(
            apply_status(S::Running, S::Success),
            Ok(Applied::Changed(S::Success))
        );
        assert_eq!(
            apply_status(S::Running, S::TimedOutStale),
            Ok(Applied::Changed(S::TimedOutStale))
        );
        assert_eq!(
            apply_status(S::Queued, S::DriftDropped),
            Ok(Applied::Changed(S::DriftDropped))
        );
        assert!(apply_status(S::Pending, S::Success).is_err());
        assert!(apply_status(S::TimedOutStale, S::Success).is_err());
    }

    #[test]
    fn run_status_aggregation() {
        use RunStatus as R;
        assert_eq!(aggregate_run_status(&[S::Success, S::Skipped]), R::Success);
        assert_eq!(
            aggregate_run_status(&[S::Success, S::Cancelled]),
            R::Cancelled
        );
        assert_eq!(aggregate_run_status(&[S::Cancelled, S::Failed]), R::Failed);
        assert_eq!(
            aggregate_run_status(&[S::Success, S::TimedOutStale]),
            R::Failed
        );
        assert_eq!(
            aggregate_run_status(&[S::Skipped, S::DriftDropped]),
            R::Failed
        );
        assert_eq!(aggregate_run_status(&[S::Pending, S::Queued]), R::Pending);
        assert_eq!(aggregate_run_status(&[S::Success, S::Pending]), R::Running);
        assert_eq!(aggregate_run_status(&[S::Running]), R::Running);
        assert_eq!(aggregate_run_status(&[]), R::Success);
    }

    #[test]
    fn wire_spellings_round_trip() {
        for s in S::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(JobStatus::parse("done"), None);
    }
}
