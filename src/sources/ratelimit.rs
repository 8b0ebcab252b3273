//! Per-source webhook rate limiting (docs/operations.md, "Webhook sources"): a sliding window of
//! 60 s per key over the timestamps of admitted requests, in memory and per process (cluster
//! peers each enforce their own limit, as in the reference).
//!
//! The clock is passed in (`now: Instant`) so tests drive time by hand; only differences between
//! instants are used, so any base instant works.
//!
//! Memory: up to `EXACT_MAX` requests per minute a key keeps the timestamps of admitted requests
//! (exact, like the reference). Above that a key keeps 60 one-second counters instead, so a
//! high-volume source costs a constant few hundred bytes rather than 16 bytes per request (at
//! 10 000 webhooks/s the timestamps alone would be ~10 MiB); the window is then exact to the
//! second.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The window is fixed at one minute; the limit is per minute (`rate_limit_rpm`).
const WINDOW: Duration = Duration::from_secs(60);
/// Below this many keys `check` never sweeps on its own. Keys are source ids, and only known
/// sources reach the limiter (the source lookup comes first), so this is rarely passed at all.
const MIN_SWEEP_AT: usize = 1024;
/// Limits above this are counted in one-second buckets (see the module comment).
const EXACT_MAX: u32 = 10_000;
const BUCKETS: usize = 60;

/// Sliding-window limiter shared by every connection thread through `&self`.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Admitted requests per key.
    windows: HashMap<String, Window>,
    /// Where bucket time starts (the first instant seen): bucket `n` is second `n` after it.
    epoch: Option<Instant>,
    /// `check` sweeps when a new key would take the map to this size, then doubles it past the
    /// survivors, so sweeping costs O(1) per check amortized while idle keys cannot pile up.
    sweep_at: usize,
}

/// A refused request: answer `429` with `Retry-After: <seconds>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    /// Whole seconds until the oldest admitted request leaves the window, rounded up, at least 1.
    pub seconds: u64,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        RateLimiter {
            state: Mutex::new(State {
                windows: HashMap::new(),
                epoch: None,
                sweep_at: MIN_SWEEP_AT,
            }),
        }
    }

    /// Admit and record one request for `key` if fewer than `limit_per_minute` were admitted in
    /// the last 60 s; otherwise refuse without recording, so a client that keeps retrying does not
    /// push its own window forward.
    ///
    /// The webhook routes check after signature verification (docs/operations.md, "Webhook
    /// sources"), so requests with a bad signature do not use up the budget. A limit of 0 refuses
    /// everything with `Retry-After: 60`.
    pub fn check(&self, key: &str, limit_per_minute: u32, now: Instant) -> Result<(), RetryAfter> {
        let mut state = self.lock();
        if !state.windows.contains_key(key) && state.windows.len() + 1 >= state.sweep_at {
            state.sweep(now);
        }
        let epoch = *state.epoch.get_or_insert(now);
        let second = now.saturating_duration_since(epoch).as_secs();
        let bucketed = limit_per_minute > EXACT_MAX;
        let window = match state.windows.get_mut(key) {
            Some(window) => window,
            None => state
                .windows
                .entry(key.to_owned())
                .or_insert_with(|| Window::new(bucketed)),
        };
        if window.is_bucketed() != bucketed {
            // The limit crossed EXACT_MAX: start this key's window afresh in the other form.
            *window = Window::new(bucketed);
        }
        match window {
            Window::Exact(times) => {
                while times.front().is_some_and(|&t| expired(t, now)) {
                    times.pop_front();
                }
                // A lowered limit can leave more entries than the new limit; they age out
                // within 60 s.
                if times.len() >= limit_per_minute as usize {
                    let free_at = times
                        .front()
                        .map_or(now + WINDOW, |&oldest| oldest + WINDOW);
                    return Err(RetryAfter {
                        seconds: ceil_secs(free_at.saturating_duration_since(now)).max(1),
                    });
                }
                times.push_back(now);
            }
            Window::Buckets { counts, last } => {
                advance(counts, last, second);
                let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
                if total >= u64::from(limit_per_minute) {
                    // Seconds until the oldest non-empty bucket leaves the window.
                    let oldest = (0..BUCKETS as u64).find(|age| {
                        counts[((second + BUCKETS as u64 - 59 + age) % BUCKETS as u64) as usize] > 0
                    });
                    return Err(RetryAfter {
                        seconds: oldest.map_or(BUCKETS as u64, |age| age + 1),
                    });
                }
                let slot = (second % BUCKETS as u64) as usize;
                counts[slot] = counts[slot].saturating_add(1);
            }
        }
        Ok(())
    }

    /// Forget keys with no request in the last 60 s. Run it now and then (e.g. from the daemon's
    /// housekeeping tick); `check` also does it on its own when the key count grows.
    pub fn sweep(&self, now: Instant) {
        self.lock().sweep(now);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent (pushes and pops of
        // timestamps), so a poisoned lock is used as is rather than taking every webhook down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn sweep(&mut self, now: Instant) {
        let second = self
            .epoch
            .map_or(0, |e| now.saturating_duration_since(e).as_secs());
        self.windows.retain(|_, w| match w {
            // The newest timestamp is at the back: if it has expired, the whole window has.
            Window::Exact(times) => times.back().is_some_and(|&t| !expired(t, now)),
            Window::Buckets { last, .. } => second.saturating_sub(*last) < BUCKETS as u64,
        });
        self.sweep_at = (self.windows.len() * 2).max(MIN_SWEEP_AT);
    }
}

#[derive(Debug)]
enum Window {
    Exact(VecDeque<Instant>),
    /// `counts[s % 60]` = admitted in second `s`; `last` = the newest second written.
    Buckets {
        counts: Box<[u32; BUCKETS]>,
        last: u64,
    },
}

impl Window {
    fn new(bucketed: bool) -> Window {
        if bucketed {
            Window::Buckets {
                counts: Box::new([0; BUCKETS]),
                last: 0,
            }
        } else {
            Window::Exact(VecDeque::new())
        }
    }

    fn is_bucketed(&self) -> bool {
        matches!(self, Window::Buckets { .. })
    }
}

/// Zeroes the buckets of the seconds between `last` and `now` (they saw no request) and moves
/// `last` to `now`.
fn advance(counts: &mut [u32; BUCKETS], last: &mut u64, now: u64) {
    if now <= *last {
        return;
    }
    let gap = (now - *last).min(BUCKETS as u64);
    for s in 1..=gap {
        counts[((*last + s) % BUCKETS as u64) as usize] = 0;
    }
    *last = now;
}

/// The window keeps timestamps strictly newer than `now - 60 s`; one exactly 60 s old is gone.
fn expired(admitted: Instant, now: Instant) -> bool {
    now.saturating_duration_since(admitted) >= WINDOW
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_limits_use_constant_memory_buckets() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let limit = 20_000;
        // 20 000 admitted over the first 10 s, then refused for the rest of the minute.
        for i in 0..limit {
            let at = t0 + Duration::from_millis(u64::from(i) / 2);
            assert!(rl.check("big", limit, at).is_ok(), "request {i}");
        }
        let at = t0 + Duration::from_secs(30);
        let retry = rl.check("big", limit, at).unwrap_err();
        // Second 0's requests leave the window when it starts at second 1, i.e. at second 60.
        assert_eq!(retry.seconds, 30);
        assert!(
            rl.check("big", limit, t0 + Duration::from_secs(61)).is_ok(),
            "second 0 has left the window"
        );
        match &rl.lock().windows["big"] {
            Window::Buckets { counts, .. } => {
                assert!(counts.iter().map(|&c| u64::from(c)).sum::<u64>() <= u64::from(limit))
            }
            Window::Exact(_) => panic!("a limit over EXACT_MAX must be bucketed"),
        }
        // Idle for a minute: swept.
        rl.sweep(t0 + Duration::from_secs(200));
        assert!(rl.lock().windows.is_empty());
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn keys(limiter: &RateLimiter) -> usize {
        limiter.lock().windows.len()
    }

    #[test]
    fn admits_exactly_the_limit_then_refuses_with_retry_after() {
        let (rl, t0) = (RateLimiter::new(), Instant::now());
        for i in 0..3 {
            assert_eq!(rl.check("s", 3, at(t0, i * 1000)), Ok(()), "request {i}");
        }
        // The oldest (0 ms) leaves the window at 60 000 ms: 57.5 s after 2 500 ms, so 58 s.
        let refused = rl.check("s", 3, at(t0, 2_500));
        assert_eq!(refused, Err(RetryAfter { seconds: 58 }));
        assert_eq!(
            rl.check("s", 3, at(t0, 59_000)),
            Err(RetryAfter { seconds: 1 })
        );
        assert_eq!(
            rl.check("s", 3, at(t0, 59_999)),
            Err(RetryAfter { seconds: 1 })
        );
        assert_eq!(
            rl.check("s", 3, at(t0, 30_000_u64 + 400)),
            Err(RetryAfter { seconds: 30 })
        );
    }

    #[test]
    fn admitted_again_once_the_oldest_ages_out() {
        let (rl, t0) = (RateLimiter::new(), Instant::now());
        assert_eq!(rl.check("s", 2, at(t0, 0)), Ok(()));
        assert_eq!(rl.check("s", 2, at(t0, 10_000)), Ok(()));
        assert!(rl.check("s", 2, at(t0, 59_999)).is_err());
        // Exactly 60 s after the first request its slot is free again, but only that one.
        assert_eq!(rl.check("s", 2, at(t0, 60_000)), Ok(()));
        assert_eq!(
            rl.check("s", 2, at(t0, 60_001)),
            Err(RetryAfter { seconds: 10 })
        );
        assert_eq!(rl.check("s", 2, at(t0, 70_000)), Ok(()));
    }

    #[test]
    fn refused_requests_are_not_recorded() {
        let (rl, t0) = (RateLimiter::new(), Instant::now());
        assert_eq!(rl.check("s", 1, at(t0, 0)), Ok(()));
        for ms in (1_000..60_000).step_by(1_000) {
            assert!(rl.check("s", 1, at(t0, ms)).is_err());
        }
        // Had the refusals been recorded, the window would still be full.
        assert_eq!(rl.check("s", 1, at(t0, 60_000)), Ok(()));
        assert!(matches!(&rl.lock().windows["s"], Window::Exact(t) if t.len() == 1));
    }

    #[test]
    fn keys_are_independent() {
        let (rl, t0) = (RateLimiter::new(), Instant::now());
        assert_eq!(rl.check("a", 1, t0), Ok(()));
        assert!(rl.check("a", 1, t0).is_err());
        assert_eq!(rl.check("b", 1, t0), Ok(()));
        assert_eq!(rl.check("c", 5, t0), Ok(()));
    }

    #[test]
    fn zero_limit_refuses_everything() {
        let (rl, t0) = (RateLimiter::new(), Instant::now());
        assert_eq!(rl.check("s", 0, t0), Err(RetryAfter { seconds: 60 }));
    }

    #[test]
    fn lowered_limit_refuses_until_enough_age_out() {
        let (rl, t0) = (RateLimiter::new(), Instant::now());
        for i in 0..4 {
            assert_eq!(rl.check("s", 4, at(t0, i * 1000)), Ok(()));
        }
        assert!(
            rl.check("s", 2, at(t0, 61_500)).is_err(),
            "3 000 and 2 000 still count"
        );
        assert_eq!(rl.check("s", 2, at(t0, 62_000)), Ok(()));
    }

    #[test]
    fn sweep_frees_idle_keys_only() {
        let (rl, t0) = (RateLimiter::new(), Instant::now());
        rl.check("idle", 5, at(t0, 0)).unwrap();
        rl.check("busy", 5, at(t0, 0)).unwrap();
        rl.check("busy", 5, at(t0, 30_000)).unwrap();
        rl.sweep(at(t0, 59_999));
        assert_eq!(keys(&rl), 2);
        rl.sweep(at(t0, 60_000));
        assert_eq!(keys(&rl), 1);
        assert!(rl.lock().windows.contains_key("busy"));
        rl.sweep(at(t0, 90_000));
        assert_eq!(keys(&rl), 0);
    }

    #[test]
    fn check_sweeps_by_itself_when_keys_pile_up() {
        let (rl, t0) = (RateLimiter::new(), Instant::now());
        for i in 0..MIN_SWEEP_AT - 1 {
            rl.check(&format!("old-{i}"), 1, t0).unwrap();
        }
        assert_eq!(keys(&rl), MIN_SWEEP_AT - 1);
        rl.check("new", 1, at(t0, 61_000)).unwrap();
        assert_eq!(keys(&rl), 1, "the idle keys were dropped");
    }

    #[test]
    fn many_threads_share_one_budget() {
        let (rl, t0) = (RateLimiter::new(), Instant::now());
        let admitted: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..50).filter(|_| rl.check("s", 100, t0).is_ok()).count()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(admitted, 100);
    }
}
