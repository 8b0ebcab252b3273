//! Shared settings of the never-panic property tests. Every parser a stranger can feed (a
//! webhook body, an agent frame, an HTTP request, a lock file) has a `mod props` next to it whose
//! tests are named `never_panics_*` and take their settings from [`config`]. `scripts/test.sh`
//! runs them briefly; `scripts/fuzz.sh SECONDS` runs them in rounds with many more cases, each
//! round with a fresh random seed.

use proptest::test_runner::Config;

/// Cases per property: `KICI_PROPTEST_CASES`, else a count small enough for the test suite.
pub fn config() -> Config {
    let cases = std::env::var("KICI_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        // A failure prints its minimal input; nothing is written into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}
