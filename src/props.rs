//! Shared settings of the never-panic property tests. Every parser a stranger can feed (a
//! webhook body, an agent frame, an HTTP request, a lock file) has a `mod props` next to it whose
//! tests are named `never_panics_*` and take their settings from [`config`]. `scripts/test.sh`
//! runs them briefly; `scripts/fuzz.sh SECONDS` runs them in rounds with many more cases, each
//! round with a fresh random seed.

use proptest::{prelude::*, test_runner::Config};
use serde_json::Value;

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

/// Small JSON values of every kind (numbers at their extremes included), nested up to `depth`
/// levels: strings from `strings` and object keys from `keys`, so each parser's properties can
/// aim at the words it reads while still meeting everything else.
pub fn json_value(
    strings: impl Strategy<Value = String> + 'static,
    keys: impl Strategy<Value = String> + 'static,
    depth: u32,
) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        strings.prop_map(Value::String),
    ];
    let keys = keys.boxed();
    leaf.prop_recursive(depth, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}
