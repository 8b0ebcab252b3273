//! What call sites call: one function per thing counted, so each instrumented line elsewhere
//! stays one line and the label values (always from a small fixed set) are chosen here.

use std::time::Instant;

use super::get;
use crate::{
    ingest::{Incoming, Target, Verdict, Via},
    runs::events::{Change, RunEvent},
};

fn via(v: Via) -> &'static str {
    match v {
        Via::Direct => "direct",
        Via::Relayed => "relayed",
    }
}

/// The verdict's label: one word per `Verdict` variant.
pub fn verdict_label(v: &Verdict) -> &'static str {
    match v {
        Verdict::Accepted { .. } => "accepted",
        Verdict::Duplicate { .. } => "duplicate",
        Verdict::Filtered { .. } => "filtered",
        Verdict::UnknownSource => "unknown_source",
        Verdict::InvalidSignature => "invalid_signature",
        Verdict::Misconfigured => "misconfigured",
        Verdict::TooLarge { .. } => "too_large",
        Verdict::NotKept(_) => "not_kept",
        Verdict::RateLimited { .. } => "rate_limited",
        Verdict::BadRequest(_) => "bad_request",
        Verdict::Unavailable(_) => "unavailable",
    }
}

/// A delivery went through the intake (`Intake::take`), either way in.
pub fn intake(d: &Incoming, verdict: &Verdict) {
    let kind = match d.target {
        Target::Generic { .. } | Target::GenericKey(_) => "generic",
        Target::GitHub { .. } => "github",
    };
    let m = get();
    m.webhooks_received.inc(&[kind, via(d.via)]);
    m.webhook_verdicts
        .inc(&[kind, via(d.via), verdict_label(verdict)]);
    if matches!(verdict, Verdict::Duplicate { .. }) {
        m.dedup_hits.inc(&[via(d.via)]);
    }
}

/// One group commit of deliveries (src/ingest/recorder.rs) that started at `started`.
pub fn ingest_commit(started: Instant, deliveries: usize, ok: bool) {
    let m = get();
    m.ingest_commit_seconds
        .observe(&[], started.elapsed().as_secs_f64());
    m.ingest_batch_size.observe(&[], deliveries as f64);
    if !ok {
        m.ingest_commit_errors.inc(&[]);
    }
}

/// The outcome label of a delivery the pipeline finished: its `event_log` status, and whether
/// it created runs.
pub fn outcome_label(status: &str, runs: i32) -> &'static str {
    match status {
        "processed" if runs > 0 => "run_created",
        "processed" => "no_match",
        "lockfile_missing" => "lockfile_missing",
        "lockfile_corrupt" => "lockfile_invalid",
        "failed" => "failed",
        _ => "other",
    }
}

/// The pipeline marked a delivery `status` with `runs` runs started.
pub fn delivery_processed(status: &str, runs: i32) {
    get()
        .deliveries_processed
        .inc(&[outcome_label(status, runs)]);
}

/// Trigger matching of one delivery that started at `started`.
pub fn trigger_match(started: Instant) {
    get()
        .trigger_match_seconds
        .observe(&[], started.elapsed().as_secs_f64());
}

/// A job was claimed for an agent, `pending_secs` after it became dispatchable.
pub fn dispatched(pending_secs: f64) {
    let m = get();
    m.jobs_dispatched.inc(&[]);
    m.dispatch_latency.observe(&[], pending_secs.max(0.0));
}

/// Statuses a run or job ends with (src/runs/state.rs); anything else counts as `other`.
fn conclusion(status: &str) -> Option<&'static str> {
    Some(match status {
        "success" => "success",
        "failed" => "failed",
        "cancelled" => "cancelled",
        "skipped" => "skipped",
        "timed_out_stale" => "timed_out_stale",
        "drift_dropped" => "drift_dropped",
        _ => return None,
    })
}

/// The run-event subscriber (src/runs/events.rs): runs created, runs and jobs by conclusion.
/// It runs on the publishing thread, so it only counts.
pub fn run_events() -> Box<dyn Fn(&RunEvent) + Send + Sync> {
    Box::new(|e: &RunEvent| {
        let m = get();
        match &e.change {
            Change::Run { status } if status == "pending" => m.runs_created.inc(&[]),
            Change::Run { status } => {
                if let Some(c) = conclusion(status) {
                    m.runs_completed.inc(&[c]);
                }
            }
            Change::Job { status, .. } => {
                if let Some(c) = conclusion(status) {
                    m.jobs_completed.inc(&[c]);
                }
            }
            Change::Claimed { .. } | Change::Step { .. } => {}
        }
    })
}

/// Step log lines committed (src/agent/log_writer.rs): how many, and their bytes.
pub fn log_stored(lines: usize, bytes: usize) {
    let m = get();
    m.log_lines_stored.add(&[], lines as u64);
    m.log_bytes_stored.add(&[], bytes as u64);
}

/// The Platform link ended (lost, refused or failed to connect); a reconnect follows.
pub fn platform_reconnect() {
    get().platform_reconnects.inc(&[]);
}

/// A relayed delivery was answered with a `webhook.ack` of `result`.
pub fn relayed(result: &'static str) {
    get().platform_relayed.inc(&[result]);
}

/// The LISTEN connection was opened again after it was lost.
pub fn listen_reconnect() {
    get().listen_reconnects.inc(&[]);
}

/// A database connection could not be opened (`connect`) or the pool had none free in time
/// (`pool_timeout`).
pub fn db_error(kind: &'static str) {
    get().db_errors.inc(&[kind]);
}

/// One S3 request (`operation` as src/storage/s3.rs names it) answered `status`, or not
/// answered at all (`None`: network, TLS, timeout).
pub fn storage(operation: &str, status: Option<u16>) {
    let outcome = match status {
        Some(200..=299) => "ok",
        Some(404) => "not_found",
        Some(_) => "refused",
        None => "error",
    };
    get().storage_requests.inc(&[operation, outcome]);
}

/// A GitHub REST call answered `status` (`None`: no answer), with its rate-limit headers.
pub fn github(status: Option<u16>, remaining: Option<&str>, resource: Option<&str>) {
    let m = get();
    match status {
        Some(s) => with_status(s, |label| m.github_calls.inc(&[label])),
        None => m.github_calls.inc(&["error"]),
    }
    if let Some(left) = remaining.and_then(|r| r.trim().parse::<f64>().ok()) {
        let resource = match resource.map(str::trim) {
            Some(r) if is_word(r) => r,
            _ => "core",
        };
        m.github_rate_limit_remaining.set(&[resource], left);
    }
}

/// A short lower-case word (GitHub's rate-limit resources: `core`, `search`, `graphql`, …).
fn is_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Three ASCII digits of a number below 1000, without allocating.
fn itoa3(n: u16) -> [u8; 3] {
    let n = n % 1000;
    [
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]
}

/// An HTTP status as a label (`"202"`), without allocating; `other` outside 100–599.
pub fn with_status<R>(status: u16, f: impl FnOnce(&str) -> R) -> R {
    if (100..600).contains(&status) {
        let digits = itoa3(status);
        f(std::str::from_utf8(&digits).unwrap_or("other"))
    } else {
        f("other")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_in_words() {
        assert_eq!(outcome_label("processed", 2), "run_created");
        assert_eq!(outcome_label("processed", 0), "no_match");
        assert_eq!(outcome_label("lockfile_corrupt", 1), "lockfile_invalid");
        assert_eq!(outcome_label("lockfile_missing", 0), "lockfile_missing");
        assert_eq!(outcome_label("weird", 0), "other");
    }

    #[test]
    fn statuses_become_three_digit_labels() {
        assert_eq!(with_status(202, str::to_owned), "202");
        assert_eq!(with_status(99, str::to_owned), "other");
        assert_eq!(with_status(600, str::to_owned), "other");
    }

    #[test]
    fn github_calls_count_by_status_and_keep_the_rate_limit() {
        let before = get().github_calls.get(&["201"]);
        github(Some(201), Some(" 4999 "), Some("core"));
        github(None, None, None);
        github(Some(200), Some("12"), Some("bad resource\n"));
        assert_eq!(get().github_calls.get(&["201"]), before + 1);
        assert!(get().github_calls.get(&["error"]) >= 1);
        let core = get().github_rate_limit_remaining.at(&["core"], |g| g.get());
        assert!(core == 4999.0 || core == 12.0, "{core}");
    }
}
