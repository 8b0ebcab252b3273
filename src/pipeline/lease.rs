//! When the sweep hands a recorded delivery to a pipeline worker again (pure). A worker claims a
//! delivery by setting `status = 'processing'`, `claimed_at` and `processing_attempts`
//! (`records::claim_delivery`); the claim is a lease: a worker that crashed or wedged leaves a
//! claim that nobody renews, and the delivery is processed again once the lease is over, at most
//! [`MAX_PROCESSING_ATTEMPTS`] times in all.

/// How long a claim holds. Processing a delivery normally takes well under a second; the slowest
/// legitimate case is a handful of GitHub calls (installation token, lock file, changed files),
/// each capped at 15 s by `src/github/api.rs`, so about a minute. Five minutes is far above that,
/// so a live worker never loses its claim, and short enough that a crash costs minutes, not hours.
pub const LEASE_SECS: i64 = 300;
/// A delivery still `received` this long after it was recorded missed its worker (a full queue, a
/// restart before processing). Shorter would hand deliveries that merely wait in the queue to the
/// workers twice (harmless, the claim is atomic, but wasted).
pub const RECEIVED_GRACE_SECS: i64 = 30;
/// After this many claims that did not finish, the delivery is `failed`: something in it makes
/// the worker crash or hang, and trying forever would do so forever.
pub const MAX_PROCESSING_ATTEMPTS: i32 = 3;

/// A delivery the sweep found not finished, as the database sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// `received` or `processing`.
    pub status: String,
    pub received_age_secs: i64,
    /// Seconds since the last claim (`None`: never claimed).
    pub claimed_age_secs: Option<i64>,
    pub attempts: i32,
    /// False for deliveries recorded without their payload (older versions kept none above
    /// `KICI_EVENT_LOG_MAX_PAYLOAD_BYTES`): there is nothing to process.
    pub has_payload: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepVerdict {
    /// Recent, or its claim still holds.
    Leave,
    /// Hand it to a worker (which claims it atomically, so two sweeps resubmitting it are fine).
    Resubmit,
    /// Mark it `failed` with this reason.
    GiveUp(String),
}

pub fn verdict(d: &Unfinished) -> SweepVerdict {
    let lease_over = |age: Option<i64>| age.is_none_or(|a| a >= LEASE_SECS);
    let due = match d.status.as_str() {
        "received" => d.received_age_secs >= RECEIVED_GRACE_SECS,
        "processing" => lease_over(d.claimed_age_secs),
        _ => false,
    };
    if !due {
        return SweepVerdict::Leave;
    }
    if !d.has_payload {
        return SweepVerdict::GiveUp(
            "the payload was not kept (over KICI_EVENT_LOG_MAX_PAYLOAD_BYTES when it was recorded), \
             so it cannot be processed; redeliver it from the sender after raising the limit"
                .into(),
        );
    }
    if d.attempts >= MAX_PROCESSING_ATTEMPTS {
        return SweepVerdict::GiveUp(format!(
            "processing did not finish after {MAX_PROCESSING_ATTEMPTS} attempts (each claim \
             expired after {LEASE_SECS} s without a result): a worker crashed or hung on this \
             delivery; see the orchestrator's log around its claims, then redeliver it"
        ));
    }
    SweepVerdict::Resubmit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(status: &str, received: i64, claimed: Option<i64>, attempts: i32) -> Unfinished {
        Unfinished {
            status: status.into(),
            received_age_secs: received,
            claimed_age_secs: claimed,
            attempts,
            has_payload: true,
        }
    }

    #[test]
    fn received_deliveries_wait_for_their_worker_first() {
        assert_eq!(verdict(&d("received", 5, None, 0)), SweepVerdict::Leave);
        assert_eq!(
            verdict(&d("received", RECEIVED_GRACE_SECS, None, 0)),
            SweepVerdict::Resubmit
        );
    }

    #[test]
    fn a_claim_is_judged_by_when_it_was_claimed_not_by_arrival() {
        // Arrived an hour ago (a backlog), claimed a second ago: the claim holds.
        assert_eq!(
            verdict(&d("processing", 3600, Some(1), 1)),
            SweepVerdict::Leave
        );
        assert_eq!(
            verdict(&d("processing", 3600, Some(LEASE_SECS - 1), 1)),
            SweepVerdict::Leave
        );
        assert_eq!(
            verdict(&d("processing", 3600, Some(LEASE_SECS), 1)),
            SweepVerdict::Resubmit
        );
        // Claimed by a version that did not record claims.
        assert_eq!(
            verdict(&d("processing", 3600, None, 1)),
            SweepVerdict::Resubmit
        );
    }

    #[test]
    fn gives_up_after_the_last_attempt_with_the_reason() {
        assert_eq!(
            verdict(&d(
                "processing",
                900,
                Some(LEASE_SECS),
                MAX_PROCESSING_ATTEMPTS - 1
            )),
            SweepVerdict::Resubmit
        );
        let SweepVerdict::GiveUp(why) = verdict(&d(
            "processing",
            900,
            Some(LEASE_SECS),
            MAX_PROCESSING_ATTEMPTS,
        )) else {
            panic!("expected to give up");
        };
        assert!(
            why.starts_with("processing did not finish after 3 attempts"),
            "{why}"
        );
        // A live claim is never given up, whatever the count.
        assert_eq!(
            verdict(&d("processing", 900, Some(10), MAX_PROCESSING_ATTEMPTS)),
            SweepVerdict::Leave
        );
    }

    #[test]
    fn payloadless_deliveries_fail_instead_of_waiting_forever() {
        let mut old = d("received", 600, None, 0);
        old.has_payload = false;
        let SweepVerdict::GiveUp(why) = verdict(&old) else {
            panic!("expected to give up");
        };
        assert!(why.contains("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES"), "{why}");
        assert_eq!(verdict(&d("processed", 600, None, 1)), SweepVerdict::Leave);
    }
}
