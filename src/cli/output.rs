//! Printing for people (padded text) and scripts (`--json`, pretty-printed like the reference).

use serde::Serialize;
use serde_json::Value;

pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("Error: cannot print JSON: {e}"),
    }
}

/// Prints an API answer as JSON for `--json`, else the text `human` makes of it.
pub fn show(answer: &Value, json: bool, human: impl FnOnce(&Value) -> String) {
    if json {
        print_json(answer);
    } else {
        println!("{}", human(answer));
    }
}

/// `s` padded with spaces to `width` characters (like JavaScript's padEnd).
pub fn pad(s: &str, width: usize) -> String {
    format!("{s:<width$}")
}

/// A field of an API answer as JavaScript's template strings show it: strings bare, numbers and
/// booleans as written, null or absent as "".
pub fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Like `field`, but `None` when the field is absent, null or "" (the "only when set" lines).
pub fn opt_field(v: &Value, key: &str) -> Option<String> {
    Some(field(v, key)).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_print_like_javascript() {
        let v = json!({"s": "x", "n": 300, "b": false, "z": null, "e": ""});
        assert_eq!(field(&v, "s"), "x");
        assert_eq!(field(&v, "n"), "300");
        assert_eq!(field(&v, "b"), "false");
        assert_eq!(field(&v, "z"), "");
        assert_eq!(field(&v, "missing"), "");
        assert_eq!(opt_field(&v, "e"), None);
        assert_eq!(opt_field(&v, "z"), None);
        assert_eq!(opt_field(&v, "b").as_deref(), Some("false"));
    }
}
