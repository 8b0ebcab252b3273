//! Printing for people (padded text) and scripts (`--json`, pretty-printed like the reference),
//! all through one writer: `outln!` / [`write_stdout`].
//!
//! A closed stdout is success (ripgrep's rule): `kici-admin source list --json | head -1` must end
//! quietly with exit 0, never with std's "failed printing to stdout" panic. Rust ignores SIGPIPE,
//! so a write to a closed pipe fails with `BrokenPipe`; [`write_stdout`] turns that into a quiet
//! exit 0, since nothing more can be shown and what the command did is already done. SIGPIPE is
//! deliberately not restored to its default for the CLI: that would end the process by the
//! signal (status 141, not 0), and would also hit writes to sockets and child pipes, whose
//! failures must stay errors. Any other write error (a full disk behind `>`) ends the process
//! with exit 1 and one line on stderr. `println!` is therefore not used in `src/cli`.

use std::fmt;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

/// `println!` for the CLI: one line to stdout through [`write_stdout`].
macro_rules! outln {
    () => {
        $crate::cli::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Writes to stdout and flushes; a closed stdout ends the process with exit 0 (see the module
/// doc), any other failure with exit 1.
pub fn write_stdout(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

/// Writes raw bytes to stdout, with [`write_stdout`]'s handling of a closed stdout.
pub fn write_stdout_bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

/// What a failed write to stdout means for the process; see the module doc.
pub fn stdout_failed(e: &io::Error) -> ! {
    if stdout_closed(e) {
        std::process::exit(0);
    }
    eprintln!("Error: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// Whether a write error says the reader of stdout went away.
pub fn stdout_closed(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => outln!("{s}"),
        Err(e) => eprintln!("Error: cannot print JSON: {e}"),
    }
}

/// `print_json` for admin API answers that carry database column names (token and generic-source
/// rows): every `--json` output uses camelCase keys (README, "Output"), so `created_at` is printed
/// as `createdAt`. Only lowercase snake_case keys change: `KICI_PORT` or `X-Event-Type` stay.
pub fn print_json_camel(value: &Value) {
    print_json(&camel_case_keys(value));
}

/// [`show`] with [`print_json_camel`] for `--json`.
pub fn show_camel(answer: &Value, json: bool, human: impl FnOnce(&Value) -> String) {
    if json {
        print_json_camel(answer);
    } else {
        outln!("{}", human(answer));
    }
}

/// `value` with every lowercase snake_case object key, at any depth, in camelCase.
pub fn camel_case_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (camel_case(k), camel_case_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(camel_case_keys).collect()),
        other => other.clone(),
    }
}

/// `created_at` → `createdAt`; a key that is not lowercase snake_case is returned unchanged.
pub fn camel_case(key: &str) -> String {
    let snake = key.contains('_')
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && !key.ends_with('_')
        && !key.contains("__")
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !snake {
        return key.to_owned();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a key is in the documented style (camelCase: starts lowercase, no `_` or `-`).
pub fn is_camel_case(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Prints an API answer as JSON for `--json`, else the text `human` makes of it.
pub fn show(answer: &Value, json: bool, human: impl FnOnce(&Value) -> String) {
    if json {
        print_json(answer);
    } else {
        outln!("{}", human(answer));
    }
}

/// `s` padded with spaces to `width` characters (like JavaScript's padEnd).
pub fn pad(s: &str, width: usize) -> String {
    format!("{s:<width$}")
}

/// An aligned table: a header row, a rule, then the rows, each column padded to its widest
/// cell (counted in characters) and separated by two spaces; no trailing spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    pad(c, widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut lines = vec![line(header.to_vec())];
    lines.push(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    );
    for row in rows {
        lines.push(line(row.iter().map(String::as_str).collect()));
    }
    lines.join("\n")
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

    #[test]
    fn database_column_names_become_camel_case_and_nothing_else_changes() {
        assert_eq!(camel_case("created_at"), "createdAt");
        assert_eq!(camel_case("dedup_window_seconds"), "dedupWindowSeconds");
        assert_eq!(camel_case("id"), "id");
        assert_eq!(camel_case("routingKey"), "routingKey");
        for kept in ["KICI_PORT", "X-Event-Type", "_x", "x_", "a__b", "Ab_c", ""] {
            assert_eq!(camel_case(kept), kept);
        }
        let v = json!({"tokens": [{"routing_key": null, "last_used_at": "t"}],
                       "verification_config": {"secret_header": "X-Sig", "KICI_X": 1}});
        assert_eq!(
            camel_case_keys(&v),
            json!({"tokens": [{"routingKey": null, "lastUsedAt": "t"}],
                   "verificationConfig": {"secretHeader": "X-Sig", "KICI_X": 1}})
        );
        assert!(is_camel_case("createdAt") && is_camel_case("id"));
        assert!(!is_camel_case("created_at") && !is_camel_case("X-Event") && !is_camel_case(""));
    }

    #[test]
    fn tables_align_every_column() {
        let t = table(
            &["ID", "Label", "Revoked"],
            &[
                vec!["a1".into(), "ci".into(), "true".into()],
                vec!["b22".into(), "bootstrap".into(), "false".into()],
            ],
        );
        assert_eq!(
            t,
            "ID   Label      Revoked\n---  ---------  -------\na1   ci         true\nb22  bootstrap  false"
        );
    }

    /// The closed-stdout rule holds only if every CLI line goes through `outln!`: std's
    /// `println!`/`print!` panic on a closed pipe.
    #[test]
    fn no_cli_file_prints_with_std_macros() {
        fn walk(dir: &std::path::Path, offenders: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("src/cli").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, offenders);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("cli/output.rs")
                {
                    let text = std::fs::read_to_string(&path).expect("read");
                    for (n, line) in text.lines().enumerate() {
                        let code = line.split("//").next().unwrap_or_default();
                        let bare = |m: &str| {
                            code.match_indices(m).any(|(i, _)| {
                                !code[..i].ends_with(|c: char| {
                                    c == 'e' || c == '_' || c.is_alphanumeric()
                                })
                            })
                        };
                        if bare("println!(") || bare("print!(") {
                            offenders.push(format!("{}:{}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        let mut offenders = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli"),
            &mut offenders,
        );
        assert!(
            offenders.is_empty(),
            "use output::outln! (a closed stdout must end the command with exit 0): {offenders:?}"
        );
    }

    #[test]
    fn only_a_broken_pipe_counts_as_a_closed_stdout() {
        assert!(stdout_closed(&io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(!stdout_closed(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(!stdout_closed(&io::Error::other("x")));
    }
}
