//! Writing a job's end before believing it. Pure: the write and the sleep are passed in.
//!
//! A terminal `job.status` used to be marked done in memory first; when its database write then
//! failed, the agent's resend was dropped as a replay and the job later ended `timed_out_stale`.
//! Now the write is tried a few times with growing pauses, and only a committed write finishes
//! the job in memory (src/agent/handle.rs); when every try fails the job stays open there, so a
//! resend of the same status is recorded instead of ignored.

use std::time::Duration;

/// Pauses between tries: five tries over about 1.75 s, short enough for the session thread that
/// waits on them, long enough to ride out a PostgreSQL failover or restart's first seconds.
pub const BACKOFF: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];

/// Runs `write` until it succeeds, pausing `delays[i]` (through `sleep`) after failure `i`; the
/// last error when every try failed. `on_error` sees each failure (for the log).
pub fn until_committed<T, E>(
    delays: &[Duration],
    mut sleep: impl FnMut(Duration),
    mut on_error: impl FnMut(usize, &E),
    mut write: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        match write() {
            Ok(v) => return Ok(v),
            Err(e) => {
                attempt += 1;
                on_error(attempt, &e);
                match delays.get(attempt - 1) {
                    Some(d) => sleep(*d),
                    None => return Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that fails its first `failures` writes.
    struct FlakyStore {
        failures: usize,
        writes: usize,
    }

    impl FlakyStore {
        fn write(&mut self) -> Result<&'static str, String> {
            self.writes += 1;
            if self.writes <= self.failures {
                Err(format!("injected failure {}", self.writes))
            } else {
                Ok("committed")
            }
        }
    }

    #[test]
    fn retries_with_growing_pauses_until_committed() {
        let mut store = FlakyStore {
            failures: 3,
            writes: 0,
        };
        let mut slept = Vec::new();
        let mut seen = Vec::new();
        let r = until_committed(
            &BACKOFF,
            |d| slept.push(d),
            |n, e: &String| seen.push((n, e.clone())),
            || store.write(),
        );
        assert_eq!(r, Ok("committed"));
        assert_eq!(store.writes, 4);
        assert_eq!(slept, BACKOFF[..3].to_vec());
        assert_eq!(seen.last(), Some(&(3, "injected failure 3".to_owned())));
    }

    #[test]
    fn gives_up_after_the_last_pause_with_the_last_error() {
        let mut store = FlakyStore {
            failures: usize::MAX,
            writes: 0,
        };
        let mut slept = Vec::new();
        let r = until_committed(&BACKOFF, |d| slept.push(d), |_, _| {}, || store.write());
        assert_eq!(r, Err("injected failure 5".to_owned()));
        assert_eq!(store.writes, BACKOFF.len() + 1);
        assert_eq!(slept, BACKOFF.to_vec());
        let first_try = until_committed(&[], |_| panic!("no pause"), |_, _| {}, || Ok::<_, ()>(1));
        assert_eq!(first_try, Ok(1));
    }
}
