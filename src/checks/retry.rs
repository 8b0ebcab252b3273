//! How the reporter reads GitHub's answers (docs/check-runs.md, "Backoff and rate limits"):
//! which ones are done, which are retried and when, which mean GitHub is rate limiting us, and
//! which mean the App lacks the `checks: write` permission. Pure: the answer's status, headers
//! and message, and the time, come in as values.

use std::time::Duration;

/// What GitHub answered, as far as the policy cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// GitHub's `message` (or the body text).
    pub message: String,
    pub retry_after: Option<String>,
    pub ratelimit_remaining: Option<String>,
    pub ratelimit_reset: Option<String>,
}

/// What to do about an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted.
    Done,
    /// Rate limited: send nothing for this App until the wait is over.
    RateLimited(Duration),
    /// The App may not write checks: park the source (one warning).
    MissingPermission,
    /// An update's check run is not there any more: create it again.
    Gone,
    /// A temporary failure (5xx, 401, unreachable): retry this run with backoff.
    Retry,
    /// GitHub refuses this report for good (422 and other 4xx): log it and move on.
    Refused,
}

/// GitHub asks to wait at least a minute after a secondary rate limit that names no time.
pub const SECONDARY_DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// No wait GitHub asks for is believed beyond this (a wrong clock, a hostile proxy).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Reads an answer to a create or an update (`update`: the request named a check run id).
pub fn classify(answer: &Answer, update: bool, now_unix: i64) -> Verdict {
    let status = answer.status;
    if (200..300).contains(&status) {
        return Verdict::Done;
    }
    if status == 403 || status == 429 {
        if let Some(wait) = rate_limit_wait(answer, now_unix) {
            return Verdict::RateLimited(wait);
        }
        if status == 429 {
            return Verdict::RateLimited(SECONDARY_DEFAULT_WAIT);
        }
        return Verdict::MissingPermission;
    }
    match status {
        404 if update => Verdict::Gone,
        401 | 408 | 500..=599 => Verdict::Retry,
        _ => Verdict::Refused,
    }
}

/// The wait a rate-limit answer asks for: `Retry-After` seconds, else the primary limit's reset
/// time when `X-RateLimit-Remaining` is 0, else a minute for a secondary limit named only in
/// the message; `None` when the answer is not about rate limits.
pub fn rate_limit_wait(answer: &Answer, now_unix: i64) -> Option<Duration> {
    if let Some(secs) = answer
        .retry_after
        .as_deref()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs.max(1)).min(MAX_WAIT));
    }
    if answer.ratelimit_remaining.as_deref().map(str::trim) == Some("0") {
        let reset = answer
            .ratelimit_reset
            .as_deref()
            .and_then(|v| v.trim().parse::<i64>().ok());
        let wait = reset.map_or(60, |r| r.saturating_sub(now_unix).max(1)) as u64;
        return Some(Duration::from_secs(wait).min(MAX_WAIT));
    }
    let m = answer.message.to_ascii_lowercase();
    (m.contains("secondary rate limit") || m.contains("abuse detection"))
        .then_some(SECONDARY_DEFAULT_WAIT)
}

/// Whether a refused installation-token request means the App was not granted a permission
/// (`checks: write`): GitHub answers 422 "The permissions requested are not granted to this
/// installation." (or 403).
pub fn token_refusal_is_permission(status: u16, message: &str) -> bool {
    (status == 422 || status == 403) && message.to_ascii_lowercase().contains("permission")
}

/// The wait before the `attempt`-th retry in a row (0-based): 1 s doubling, at most `max`.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max)
        .max(Duration::from_millis(1).min(max))
}

/// Whether an in-progress update may go now: the first in-progress report and any status
/// change go at once; further in-progress updates of one check run wait `interval` after the
/// last one sent. `since_last` is the time since this check run was last reported (`None`:
/// never, or not since this process started). Returns the wait left.
pub fn coalesce_wait(
    sent_status: Option<&str>,
    desired_status: &str,
    since_last: Option<Duration>,
    interval: Duration,
) -> Option<Duration> {
    if desired_status != "in_progress" || sent_status != Some("in_progress") {
        return None;
    }
    let since = since_last?;
    (since < interval).then(|| interval - since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer(status: u16, message: &str) -> Answer {
        Answer {
            status,
            message: message.into(),
            ..Answer::default()
        }
    }

    #[test]
    fn success_and_plain_failures() {
        assert_eq!(classify(&answer(201, ""), false, 0), Verdict::Done);
        assert_eq!(classify(&answer(200, ""), true, 0), Verdict::Done);
        assert_eq!(classify(&answer(500, "boom"), false, 0), Verdict::Retry);
        assert_eq!(classify(&answer(502, ""), true, 0), Verdict::Retry);
        assert_eq!(
            classify(&answer(401, "Bad credentials"), true, 0),
            Verdict::Retry
        );
        assert_eq!(classify(&answer(404, "Not Found"), true, 0), Verdict::Gone);
        assert_eq!(
            classify(&answer(404, "Not Found"), false, 0),
            Verdict::Refused
        );
        assert_eq!(
            classify(&answer(422, "Invalid request"), false, 0),
            Verdict::Refused
        );
    }

    #[test]
    fn a_403_without_rate_limit_signs_is_a_missing_permission() {
        assert_eq!(
            classify(
                &answer(403, "Resource not accessible by integration"),
                false,
                0
            ),
            Verdict::MissingPermission
        );
        assert!(token_refusal_is_permission(
            422,
            "The permissions requested are not granted to this installation."
        ));
        assert!(!token_refusal_is_permission(
            422,
            "There is at least one repository that does not exist"
        ));
        assert!(!token_refusal_is_permission(500, "permission"));
    }

    #[test]
    fn rate_limits_honour_retry_after_then_reset_then_the_message() {
        let mut a = answer(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.");
        assert_eq!(
            classify(&a, false, 0),
            Verdict::RateLimited(SECONDARY_DEFAULT_WAIT)
        );
        a.retry_after = Some("7".into());
        assert_eq!(
            classify(&a, false, 0),
            Verdict::RateLimited(Duration::from_secs(7))
        );
        a.retry_after = Some("0".into());
        assert_eq!(
            classify(&a, false, 0),
            Verdict::RateLimited(Duration::from_secs(1))
        );
        let mut primary = answer(403, "API rate limit exceeded for installation ID 42.");
        primary.ratelimit_remaining = Some("0".into());
        primary.ratelimit_reset = Some("1000".into());
        assert_eq!(
            classify(&primary, false, 970),
            Verdict::RateLimited(Duration::from_secs(30))
        );
        // A reset in the past (clock skew) still waits a moment; one far ahead is capped.
        assert_eq!(
            classify(&primary, false, 2000),
            Verdict::RateLimited(Duration::from_secs(1))
        );
        primary.ratelimit_reset = Some(i64::MAX.to_string());
        assert_eq!(classify(&primary, false, 0), Verdict::RateLimited(MAX_WAIT));
        assert_eq!(
            classify(&answer(429, "slow down"), true, 0),
            Verdict::RateLimited(SECONDARY_DEFAULT_WAIT)
        );
        // Remaining calls left: not a rate limit.
        let mut plenty = answer(403, "Resource not accessible by integration");
        plenty.ratelimit_remaining = Some("4999".into());
        assert_eq!(classify(&plenty, false, 0), Verdict::MissingPermission);
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(0, max), Duration::from_secs(1));
        assert_eq!(backoff(3, max), Duration::from_secs(8));
        assert_eq!(backoff(9, max), max);
        assert_eq!(backoff(u32::MAX, max), max);
        assert_eq!(
            backoff(5, Duration::from_millis(200)),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn in_progress_updates_are_coalesced() {
        let five = Duration::from_secs(5);
        let s = Duration::from_secs;
        assert_eq!(
            coalesce_wait(Some("in_progress"), "in_progress", Some(s(2)), five),
            Some(s(3))
        );
        assert_eq!(
            coalesce_wait(Some("in_progress"), "in_progress", Some(s(5)), five),
            None
        );
        assert_eq!(
            coalesce_wait(Some("in_progress"), "in_progress", None, five),
            None
        );
        assert_eq!(
            coalesce_wait(Some("queued"), "in_progress", Some(s(0)), five),
            None
        );
        assert_eq!(
            coalesce_wait(Some("in_progress"), "completed", Some(s(0)), five),
            None
        );
        assert_eq!(coalesce_wait(None, "in_progress", Some(s(0)), five), None);
    }

    proptest! {
        #[test]
        fn classify_never_panics(status in 0u16..1000, message in ".{0,80}",
                                 ra in proptest::option::of(".{0,12}"),
                                 rem in proptest::option::of(".{0,6}"),
                                 reset in proptest::option::of(".{0,22}"),
                                 now in any::<i64>(), update in any::<bool>()) {
            let a = Answer { status, message, retry_after: ra, ratelimit_remaining: rem, ratelimit_reset: reset };
            if let Verdict::RateLimited(w) = classify(&a, update, now) {
                prop_assert!(w >= Duration::from_secs(1) && w <= MAX_WAIT);
            }
        }
    }
}
