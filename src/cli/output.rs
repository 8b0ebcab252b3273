//! Printing for people (padded text) and scripts (`--json`, pretty-printed like the reference).

use serde::Serialize;

pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("Error: cannot print JSON: {e}"),
    }
}

/// `s` padded with spaces to `width` characters (like JavaScript's padEnd).
pub fn pad(s: &str, width: usize) -> String {
    format!("{s:<width$}")
}
