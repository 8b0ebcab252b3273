//! The `match`/`not` filters of `generic_webhook` triggers: `{"<JSONPath>": expected}` where
//! expected is a value, a list of acceptable values, or a `/regex/flags` string (the
//! reference's `jsonpath-matcher`). Paths are the common subset — `$`, `.key`, `['key']`,
//! `[n]` — and anything else (wildcards, filters, recursive descent) is reported as not
//! supported rather than guessed at.

use serde_json::{Map, Value};

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

fn resolve<'a>(root: &'a Value, path: &str) -> Result<Option<&'a Value>, String> {
    let unsupported =
        || format!("JSONPath {path:?} is not supported (use $.a.b, $['a'] or $.a[0])");
    let rest = path.strip_prefix('$').unwrap_or(path);
    let chars: Vec<char> = rest.chars().collect();
    let mut cur = root;
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
                match cur.get(n) {
                    Some(v) => cur = v,
                    None => return Ok(None),
                }
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
        match cur.get(&key) {
            Some(v) => cur = v,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}
