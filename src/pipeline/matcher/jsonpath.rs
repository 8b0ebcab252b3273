//! The `match`/`not` filters of `generic_webhook` triggers: `{"<JSONPath>": expected}` where
//! expected is a value, a list of acceptable values, or a `/regex/flags` string (the
//! reference's `jsonpath-matcher`). Paths are the common subset — `$`, `.key`, `['key']`,
//! `[n]` — and anything else (wildcards, filters, recursive descent) is reported as not
//! supported rather than guessed at.

use serde_json::{Map, Value};

use crate::{jsregex, pipeline::limits};

/// `match` (every entry must hold) or, with `negate`, `not` (no entry may hold).
pub(super) fn evaluate(
    payload: &Value,
    filter: &Map<String, Value>,
    negate: bool,
) -> Result<bool, String> {
    for (path, expected) in filter {
        let found = resolve(payload, path)?;
        let holds = match found {
            None => false,
            Some(v) => match expected {
                Value::Array(options) => options.iter().any(|o| equals(v, o)),
                other => equals(v, other),
            },
        };
        match (negate, holds) {
            (false, false) => return Ok(false),
            (true, true) => return Ok(false),
            _ => {}
        }
    }
    Ok(true)
}

fn equals(found: &Value, expected: &Value) -> bool {
    match (found, expected) {
        (Value::String(f), Value::String(e)) => match super::js_regex_literal(e) {
            Some(Ok(re)) => re.is_match(f),
            Some(Err(_)) => false,
            None => f == e,
        },
        (Value::Object(_) | Value::Array(_), _) => false, // `===` on objects compares identity
        (f, e) => f == e,
    }
}

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

fn resolve<'a>(root: &'a Value, path: &str) -> Result<Option<&'a Value>, String> {
    let mut cur = root;
    for step in parse(path)? {
        let next = match &step {
            Step::Index(n) => cur.get(n),
            Step::Key(k) => cur.get(k),
        };
        match next {
            Some(v) => cur = v,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// A filter's path as steps; the length bound is checked first (`limits`). Iterative, so any
/// number of steps costs no stack.
fn parse(path: &str) -> Result<Vec<Step>, String> {
    if path.len() > limits::PATTERN_BYTES {
        return Err(format!(
            "JSONPath {} is {} bytes long, more than {} (the limit on pattern length)",
            limits::excerpt(path),
            path.len(),
            limits::PATTERN_BYTES
        ));
    }
    let unsupported =
        || format!("JSONPath {path:?} is not supported (use $.a.b, $['a'] or $.a[0])");
    let rest = path.strip_prefix('$').unwrap_or(path);
    let chars: Vec<char> = rest.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    let mut first = !path.starts_with('$');
    while i < chars.len() {
        let key: String;
        if chars[i] == '.' || first {
            if chars[i] == '.' {
                i += 1;
            }
            first = false;
            let start = i;
            while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                i += 1;
            }
            key = chars[start..i].iter().collect();
            if key.is_empty() || key == "*" {
                return Err(unsupported());
            }
        } else if chars[i] == '[' {
            let close = chars[i..]
                .iter()
                .position(|&c| c == ']')
                .ok_or_else(unsupported)?
                + i;
            let inner: String = chars[i + 1..close].iter().collect();
            i = close + 1;
            if let Ok(n) = inner.parse::<usize>() {
                steps.push(Step::Index(n));
                continue;
            }
            let quoted = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            key = quoted.ok_or_else(unsupported)?.to_owned();
        } else {
            return Err(unsupported());
        }
        steps.push(Step::Key(key));
    }
    Ok(steps)
}

/// The lock file's bounds on a filter (checked at validation, so an over-long path or regex is a
/// failed run rather than a trigger that silently never matches): each path's length, and each
/// `/regex/flags` value's length and nesting.
pub(super) fn check_limits(filter: &Map<String, Value>) -> Result<(), String> {
    for (path, expected) in filter {
        if path.len() > limits::PATTERN_BYTES {
            parse(path)?;
        }
        let values = match expected {
            Value::Array(options) => options.as_slice(),
            single => std::slice::from_ref(single),
        };
        for value in values {
            let Some(text) = value.as_str() else { continue };
            let Some((source, _)) = super::js_regex_literal_parts(text) else {
                continue;
            };
            if let Err(why) = jsregex::check_limits(source) {
                return Err(format!(
                    "JSONPath {} expects regex {}: {why}",
                    limits::excerpt(path),
                    limits::excerpt(text)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_parse_to_steps() {
        let steps = parse("$.a['b'][2]").expect("supported");
        let want = [Step::Key("a".into()), Step::Key("b".into()), Step::Index(2)];
        assert_eq!(steps, want);
        assert!(parse("$..a").is_err());
        assert!(parse("$.a[").is_err());
    }

    #[test]
    fn path_length_at_the_limit_passes_one_more_is_refused() {
        let at = format!("$.{}", "a".repeat(limits::PATTERN_BYTES - 2));
        assert!(parse(&at).is_ok());
        let over = format!("{at}a");
        let err = parse(&over).expect_err("1025 bytes");
        assert!(err.contains("1025 bytes long, more than 1024"), "{err}");
        let filter = json!({ over: true });
        let filter = filter.as_object().expect("object");
        assert!(check_limits(filter).is_err());
    }

    #[test]
    fn regex_values_over_the_limits_are_refused() {
        let deep = format!("/{}a{}/", "(".repeat(33), ")".repeat(33));
        let filter = json!({ "$.a": ["x", deep] });
        let err = check_limits(filter.as_object().expect("object")).expect_err("33 levels");
        assert!(err.contains("nests 33 levels deep, more than 32"), "{err}");
        let fine = json!({ "$.a": "/^(a|b)$/i", "$.b": 1 });
        assert_eq!(check_limits(fine.as_object().expect("object")), Ok(()));
    }
}

#[cfg(test)]
mod props {
    //! Filter paths come from lock files, the payloads they walk from webhook senders.

    use proptest::prelude::*;
    use serde_json::Value;

    use super::{check_limits, evaluate};

    fn path_text() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "$", ".", "..", "[", "]", "['", "']", "[\"", "\"]", "*", "0", "12", "a", "b", "é",
            "[0]", "['a']", "/",
        ]);
        prop_oneof![
            prop::collection::vec(piece, 0..16).prop_map(|p| p.concat()),
            any::<String>(),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            prop::sample::select(vec!["a", "b", "/a/", "/(/", "/a/i", "é"])
                .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[ab0-2]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_evaluating(
            paths in prop::collection::vec((path_text(), json_value()), 0..4),
            payload in json_value(),
            negate in any::<bool>(),
        ) {
            let filter = paths.into_iter().collect();
            let _ = check_limits(&filter);
            let _ = evaluate(&payload, &filter, negate);
        }
    }
}
