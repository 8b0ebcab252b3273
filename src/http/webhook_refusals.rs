//! One info log line per refused webhook (docs/operations.md, "Webhook intake and dedup"): the
//! status, the source and the reason, never a secret or the body. Refusals are what a stranger
//! can produce at will, so the lines are rate-limited: per (source, reason), the first refusal
//! of a window is logged and the rest are counted; the next logged line says how many were not.
//! The limiter is pure (time passed in) and bounded: it holds at most `MAX_KEYS` pairs, so a
//! flood of made-up source names cannot grow it either.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// How long one (source, reason) pair stays quiet after a logged line.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The most (source, reason) pairs remembered; beyond it, pairs without one are not logged
/// until old windows expire (one line says so, once per window).
pub const MAX_KEYS: usize = 1024;
/// A source label longer than this is cut (it can be a stranger's made-up URL segment).
const MAX_LABEL: usize = 120;

/// What to do with one refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Log it; `suppressed` refusals of the same pair were not logged before it.
    Log { suppressed: u64 },
    /// Count it silently.
    Quiet,
    /// Too many distinct pairs: log that once (this is that once), then stay quiet.
    Overflow,
}

#[derive(Debug)]
struct Pair {
    since: Instant,
    suppressed: u64,
}

/// Per (source, reason): when its window began and how many refusals were not logged since.
#[derive(Debug)]
pub struct RefusalLimiter {
    window: Duration,
    max_keys: usize,
    pairs: HashMap<(String, String), Pair>,
    overflow_since: Option<Instant>,
}

impl RefusalLimiter {
    pub fn new(window: Duration, max_keys: usize) -> RefusalLimiter {
        RefusalLimiter {
            window,
            max_keys,
            pairs: HashMap::new(),
            overflow_since: None,
        }
    }

    pub fn decide(&mut self, source: &str, reason: &str, now: Instant) -> Decision {
        let window = self.window;
        let key = (source.to_owned(), reason.to_owned());
        if let Some(pair) = self.pairs.get_mut(&key) {
            if now.saturating_duration_since(pair.since) < window {
                pair.suppressed += 1;
                return Decision::Quiet;
            }
            let suppressed = pair.suppressed;
            *pair = Pair {
                since: now,
                suppressed: 0,
            };
            return Decision::Log { suppressed };
        }
        if self.pairs.len() >= self.max_keys {
            self.pairs
                .retain(|_, p| now.saturating_duration_since(p.since) < window);
        }
        if self.pairs.len() >= self.max_keys {
            return match self.overflow_since {
                Some(t) if now.saturating_duration_since(t) < window => Decision::Quiet,
                _ => {
                    self.overflow_since = Some(now);
                    Decision::Overflow
                }
            };
        }
        self.pairs.insert(
            key,
            Pair {
                since: now,
                suppressed: 0,
            },
        );
        Decision::Log { suppressed: 0 }
    }
}

/// The line for a logged refusal, or `None` when it stays quiet. `source` is shown escaped and
/// cut to a bounded length; `reason` is ours (a fixed phrase or the intake's own message).
pub fn line(status: u16, source: &str, reason: &str, decision: &Decision) -> Option<String> {
    let source: String = source.chars().take(MAX_LABEL).collect();
    match decision {
        Decision::Quiet => None,
        Decision::Overflow => Some(format!(
            "webhooks refused from more than {MAX_KEYS} distinct sources and reasons: further \
             refusals of new ones are not logged for {}s",
            WINDOW.as_secs()
        )),
        Decision::Log { suppressed: 0 } => Some(format!(
            "webhook refused: {status} {reason:?} (source {source:?})"
        )),
        Decision::Log { suppressed } => Some(format!(
            "webhook refused: {status} {reason:?} (source {source:?}; {suppressed} more of these \
             in the last window were not logged)"
        )),
    }
}

/// Logs one refusal through the process-wide limiter.
pub fn log_refusal(status: u16, source: &str, reason: &str) {
    static LIMITER: OnceLock<Mutex<RefusalLimiter>> = OnceLock::new();
    let limiter = LIMITER.get_or_init(|| Mutex::new(RefusalLimiter::new(WINDOW, MAX_KEYS)));
    let decision = match limiter.lock() {
        Ok(mut l) => l.decide(source, reason, Instant::now()),
        Err(poisoned) => poisoned.into_inner().decide(source, reason, Instant::now()),
    };
    if let Some(text) = line(status, source, reason, &decision) {
        log::info!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_one_line_per_source_and_reason_within_the_window() {
        let mut l = RefusalLimiter::new(WINDOW, MAX_KEYS);
        let t0 = Instant::now();
        let mut logged = Vec::new();
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i * 10); // 10 s in all
            for (source, reason) in [
                ("acme/a", "Invalid signature"),
                ("acme/a", "Rate limit exceeded"),
                ("acme/b", "Invalid signature"),
            ] {
                if let Some(text) = line(401, source, reason, &l.decide(source, reason, now)) {
                    logged.push(text);
                }
            }
        }
        assert_eq!(logged.len(), 3, "{logged:#?}");
        // After the window, the next refusal is logged with the count of the quiet ones.
        let later = t0 + WINDOW + Duration::from_secs(11);
        assert_eq!(
            l.decide("acme/a", "Invalid signature", later),
            Decision::Log { suppressed: 999 }
        );
        assert_eq!(
            l.decide("acme/a", "Invalid signature", later),
            Decision::Quiet
        );
        let text = line(
            401,
            "acme/a",
            "Invalid signature",
            &Decision::Log { suppressed: 999 },
        );
        assert!(text.unwrap().contains("999 more"));
    }

    #[test]
    fn made_up_sources_cannot_grow_it_past_the_limit() {
        let mut l = RefusalLimiter::new(WINDOW, 4);
        let t0 = Instant::now();
        let decisions: Vec<Decision> = (0..10)
            .map(|i| l.decide(&format!("org/x{i}"), "Unknown source", t0))
            .collect();
        assert_eq!(decisions[..4], vec![Decision::Log { suppressed: 0 }; 4]);
        assert_eq!(decisions[4], Decision::Overflow);
        assert!(decisions[5..].iter().all(|d| *d == Decision::Quiet));
        assert!(l.pairs.len() <= 4);
        // Once the old windows have passed, new pairs are logged again.
        let later = t0 + WINDOW;
        assert_eq!(
            l.decide("org/new", "Unknown source", later),
            Decision::Log { suppressed: 0 }
        );
    }

    #[test]
    fn lines_escape_and_cut_the_source_and_never_hold_more_than_given() {
        let long = "x\n".repeat(500);
        let text = line(
            404,
            &long,
            "Unknown source",
            &Decision::Log { suppressed: 0 },
        )
        .unwrap();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.len() < 400, "{}", text.len());
        assert_eq!(
            line(404, "a", "b", &Decision::Quiet),
            None,
            "a quiet decision prints nothing"
        );
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_and_stays_bounded(
            events in proptest::collection::vec(("[a-z/]{0,6}", "[a-z ]{0,6}", 0u64..200_000), 0..300),
        ) {
            let mut l = RefusalLimiter::new(WINDOW, 16);
            let t0 = Instant::now();
            for (source, reason, ms) in events {
                let d = l.decide(&source, &reason, t0 + Duration::from_millis(ms));
                let _ = line(429, &source, &reason, &d);
                prop_assert!(l.pairs.len() <= 16);
            }
        }
    }
}
