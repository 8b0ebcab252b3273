//! Every long-lived thread of the daemon (LISTEN, Platform relay, dispatcher, pipeline workers,
//! housekeeping) runs under this supervisor: a panic is caught, logged with the thread's name and
//! message, and the thread's body is started again after a backoff. A thread that keeps dying is
//! reported by `/ready` (README.md, "Security"), instead of the daemon
//! silently losing, say, its dispatcher for good.
//!
//! The bookkeeping ([`Health`]) is pure, with the clock passed in; [`spawn`] is the I/O edge.

use std::{
    collections::{BTreeMap, VecDeque},
    panic::{self, AssertUnwindSafe},
    sync::{Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// Panics within this window count towards "keeps dying".
pub const FAILING_WINDOW: Duration = Duration::from_secs(300);
/// This many panics within [`FAILING_WINDOW`] make a thread failing (and `/ready` 503).
pub const FAILING_PANICS: usize = 3;
/// A body that ran this long before panicking starts its backoff again from the beginning.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The wait before the `attempt`-th restart in a row (0-based): 100 ms doubling up to 30 s, so a
/// body that panics at once does not spin, and one that recovers is back within a second.
pub fn restart_delay(attempt: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(MAX_DELAY)
}

/// What the supervisor knows of one thread.
#[derive(Debug, Default, Clone)]
pub struct Health {
    pub restarts: u64,
    pub last_panic: Option<String>,
    recent: VecDeque<Instant>,
}

impl Health {
    /// Records a panic at `now`; returns the number of panics within the failing window.
    pub fn panicked(&mut self, message: &str, now: Instant) -> usize {
        self.restarts += 1;
        self.last_panic = Some(message.to_owned());
        self.recent.push_back(now);
        self.forget_before(now);
        self.recent.len()
    }

    /// Whether the thread keeps dying: [`FAILING_PANICS`] panics within [`FAILING_WINDOW`].
    pub fn failing(&self, now: Instant) -> bool {
        self.recent
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < FAILING_WINDOW)
            .count()
            >= FAILING_PANICS
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= FAILING_WINDOW)
        {
            self.recent.pop_front();
        }
    }
}

fn registry() -> &'static Mutex<BTreeMap<String, Health>> {
    static THREADS: OnceLock<Mutex<BTreeMap<String, Health>>> = OnceLock::new();
    THREADS.get_or_init(Default::default)
}

fn with_registry<T>(f: impl FnOnce(&mut BTreeMap<String, Health>) -> T) -> T {
    f(&mut registry().lock().unwrap_or_else(|p| p.into_inner()))
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Starts `body` on a thread named `name` and runs it again after each panic. The body returns
/// when its work is over (its stop flag is set); the thread then ends. `stopping` is asked
/// between restarts so a shutdown never waits for a backoff.
pub fn spawn<F, S>(name: &str, stopping: S, mut body: F) -> std::io::Result<()>
where
    F: FnMut() + Send + 'static,
    S: Fn() -> bool + Send + 'static,
{
    let owned = name.to_owned();
    with_registry(|r| {
        r.entry(owned.clone()).or_default();
    });
    thread::Builder::new().name(owned.clone()).spawn(move || {
        let mut attempt: u32 = 0;
        loop {
            let started = Instant::now();
            let Err(payload) = panic::catch_unwind(AssertUnwindSafe(&mut body)) else {
                return;
            };
            let message = panic_message(payload.as_ref());
            let now = Instant::now();
            if now.duration_since(started) >= HEALTHY_RUN {
                attempt = 0;
            }
            let delay = restart_delay(attempt);
            attempt = attempt.saturating_add(1);
            let recent = with_registry(|r| r.entry(owned.clone()).or_default().panicked(&message, now));
            log::error!(
                "thread {owned} panicked: {message}; restarting it in {} ms ({recent} panic(s) in the last {} s)",
                delay.as_millis(),
                FAILING_WINDOW.as_secs()
            );
            let until = Instant::now() + delay;
            while Instant::now() < until {
                if stopping() {
                    return;
                }
                thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
            }
            if stopping() {
                return;
            }
        }
    })?;
    Ok(())
}

/// The supervised threads that keep dying, by name.
pub fn failing() -> Vec<String> {
    let now = Instant::now();
    with_registry(|r| {
        r.iter()
            .filter(|(_, h)| h.failing(now))
            .map(|(n, _)| n.clone())
            .collect()
    })
}

/// `/ready`'s `threads` entry: every supervised thread with its restarts and last panic.
pub fn report() -> Value {
    let now = Instant::now();
    with_registry(|r| {
        r.iter()
            .map(|(name, h)| {
                (
                    name.clone(),
                    json!({
                        "restarts": h.restarts,
                        "failing": h.failing(now),
                        "lastPanic": h.last_panic,
                    }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    };

    #[test]
    fn delays_double_from_100_ms_up_to_30_s() {
        assert_eq!(restart_delay(0), Duration::from_millis(100));
        assert_eq!(restart_delay(1), Duration::from_millis(200));
        assert_eq!(restart_delay(5), Duration::from_millis(3200));
        assert_eq!(restart_delay(9), Duration::from_secs(30));
        assert_eq!(restart_delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn three_panics_within_five_minutes_make_a_thread_failing() {
        let t0 = Instant::now();
        let mut h = Health::default();
        h.panicked("a", t0);
        h.panicked("b", t0 + Duration::from_secs(100));
        assert!(!h.failing(t0 + Duration::from_secs(100)));
        assert_eq!(h.panicked("c", t0 + Duration::from_secs(200)), 3);
        assert!(h.failing(t0 + Duration::from_secs(200)));
        // The first panic leaves the window: two left, no longer failing.
        assert!(!h.failing(t0 + Duration::from_secs(301)));
        assert_eq!(h.restarts, 3);
        assert_eq!(h.last_panic.as_deref(), Some("c"));
    }

    #[test]
    fn a_panicking_body_is_restarted_and_reported() {
        let runs = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (r, d) = (runs.clone(), done.clone());
        // Panic three times, then finish normally.
        spawn(
            "test-supervised",
            || false,
            move || {
                if r.fetch_add(1, Ordering::SeqCst) < 3 {
                    panic!("boom {}", r.load(Ordering::SeqCst));
                }
                d.store(true, Ordering::SeqCst);
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(done.load(Ordering::SeqCst), "the body was not restarted");
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert!(failing().contains(&"test-supervised".to_owned()));
        let report = report();
        assert_eq!(report["test-supervised"]["restarts"], 3);
        assert_eq!(report["test-supervised"]["lastPanic"], "boom 3");
    }

    #[test]
    fn a_stop_during_the_backoff_ends_the_thread() {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicUsize::new(0));
        let (s, r) = (stop.clone(), runs.clone());
        spawn(
            "test-stopping",
            move || s.load(Ordering::SeqCst),
            move || {
                r.fetch_add(1, Ordering::SeqCst);
                panic!("always");
            },
        )
        .unwrap();
        thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(400));
        let seen = runs.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(400));
        assert_eq!(runs.load(Ordering::SeqCst), seen, "restarted after stop");
    }
}
