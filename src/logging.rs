//! One line per event on stderr (docs/operations.md, "Logs and retention"), in one of two
//! formats (`KICI_LOG_FORMAT`):
//!
//! - `text` (default): `2026-01-02T03:04:05.678Z INFO  message`. When stderr *is* journald's
//!   stream, each line starts with the syslog priority `<N>` instead of the time and level
//!   (journald reads the priority and adds its own time). Journald is recognised the way systemd
//!   documents it: `JOURNAL_STREAM` holds the `device:inode` of the stream, and it must match
//!   stderr's, since a child whose stderr was redirected to a file inherits the variable too. A
//!   file, a pipe or a terminal gets no prefix.
//! - `json`: one object per line: `time` (RFC 3339), `level`, `target`, `message`, and the ids
//!   the call site knows (`requestId`, `deliveryId`, `runId`, `jobId`, see [`ids`]). Under
//!   journald the `<N>` prefix is kept (journald strips it), so the stored message is the JSON.
//!
//! Dependencies log at warn and above only. Nothing here knows secrets: callers never pass
//! them to a log macro or an id.

use std::{cell::RefCell, io::Write};

use log::{Level, LevelFilter};
use serde_json::{Map, Value};

/// `KICI_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// How each line starts, decided once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sink {
    format: Format,
    journald: bool,
}

pub fn init(level: LevelFilter, format: Format) {
    let sink = Sink {
        format,
        journald: stderr_is_journald(),
    };
    let mut b = env_logger::Builder::new();
    b.filter_level(LevelFilter::Warn.min(level))
        .filter_module("kici_orchestrator", level)
        .filter_module("kici_admin", level)
        .format(move |buf, r| {
            let now = jiff::Timestamp::now();
            let line = line(sink, now, r.level(), r.target(), &r.args().to_string());
            buf.write_all(line.as_bytes())
        });
    // A second init (tests) is harmless.
    let _ = b.try_init();
}

/// One formatted line, newline included (pure but for the ids of this thread).
fn line(sink: Sink, now: jiff::Timestamp, level: Level, target: &str, message: &str) -> String {
    let time = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ");
    let prefix = if sink.journald {
        format!("<{}>", priority(level))
    } else {
        String::new()
    };
    match sink.format {
        Format::Json => {
            let mut o = Map::new();
            o.insert("time".into(), Value::String(time.to_string()));
            o.insert("level".into(), Value::String(level.as_str().to_owned()));
            o.insert("target".into(), Value::String(target.to_owned()));
            o.insert("message".into(), Value::String(message.to_owned()));
            IDS.with(|ids| {
                for (k, v) in ids.borrow().iter() {
                    o.insert((*k).to_owned(), Value::String(v.clone()));
                }
            });
            format!("{prefix}{}\n", Value::Object(o))
        }
        Format::Text if sink.journald => format!("{prefix}{message}\n"),
        Format::Text => format!("{time} {:<5} {message}\n", level.as_str()),
    }
}

/// The syslog priority journald reads from a `<N>` prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether stderr is the stream journald gave this process (systemd.exec(5), `JOURNAL_STREAM`).
fn stderr_is_journald() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    // SAFETY: fstat writes only the struct passed to it; fd 2 may be closed (then it fails).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    journal_stream_matches(&value.to_string_lossy(), st.st_dev as u64, st.st_ino as u64)
}

/// `JOURNAL_STREAM`'s `<device>:<inode>` (decimal) names this `(dev, ino)`.
fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.trim().parse::<u64>().ok()?, i.trim().parse::<u64>().ok()?)))
        .is_some_and(|(d, i)| d == dev && i == ino)
}

thread_local! {
    /// The ids attached to this thread's log lines, innermost last.
    static IDS: RefCell<Vec<(&'static str, String)>> = const { RefCell::new(Vec::new()) };
}

/// Attaches ids to every JSON log line this thread writes until the guard is dropped:
/// `let _ids = logging::ids(&[("deliveryId", id)]);`. Keys are camelCase (`requestId`,
/// `deliveryId`, `runId`, `jobId`); never a secret.
pub fn ids(pairs: &[(&'static str, &str)]) -> Ids {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        for (k, v) in pairs {
            ids.push((k, (*v).to_owned()));
        }
    });
    Ids(pairs.len())
}

/// Detaches its ids when dropped (see [`ids`]).
#[must_use = "the ids are detached when this is dropped"]
pub struct Ids(usize);

impl Drop for Ids {
    fn drop(&mut self) {
        IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            let keep = ids.len().saturating_sub(self.0);
            ids.truncate(keep);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> jiff::Timestamp {
        "2026-01-02T03:04:05.678Z".parse().unwrap()
    }

    const FILE: Sink = Sink {
        format: Format::Text,
        journald: false,
    };

    #[test]
    fn text_to_a_file_has_no_priority_prefix() {
        let l = line(FILE, at(), Level::Info, "kici", "Listening");
        assert_eq!(l, "2026-01-02T03:04:05.678Z INFO  Listening\n");
    }

    #[test]
    fn text_to_journald_has_only_the_priority() {
        let sink = Sink {
            journald: true,
            ..FILE
        };
        assert_eq!(
            line(sink, at(), Level::Warn, "k", "careful"),
            "<4>careful\n"
        );
    }

    #[test]
    fn json_lines_carry_the_ids_of_their_scope() {
        let sink = Sink {
            format: Format::Json,
            ..FILE
        };
        let outer = ids(&[("deliveryId", "d-1")]);
        let l = {
            let _inner = ids(&[("runId", "r-\"2\"")]);
            line(sink, at(), Level::Error, "kici::x", "a \"quoted\"\nline")
        };
        assert!(l.ends_with('\n') && l.matches('\n').count() == 1, "{l}");
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["time"], "2026-01-02T03:04:05.678Z");
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["target"], "kici::x");
        assert_eq!(v["message"], "a \"quoted\"\nline");
        assert_eq!(v["deliveryId"], "d-1");
        assert_eq!(v["runId"], "r-\"2\"");
        // The inner scope ended: its id is gone, the outer one stays.
        let v: Value = serde_json::from_str(&line(sink, at(), Level::Info, "k", "m")).unwrap();
        assert_eq!(v["deliveryId"], "d-1");
        assert!(v.get("runId").is_none());
        drop(outer);
        let v: Value = serde_json::from_str(&line(sink, at(), Level::Info, "k", "m")).unwrap();
        assert!(v.get("deliveryId").is_none());
    }

    #[test]
    fn json_under_journald_keeps_the_prefix_journald_strips() {
        let sink = Sink {
            format: Format::Json,
            journald: true,
        };
        let l = line(sink, at(), Level::Info, "k", "m");
        let json = l.strip_prefix("<6>").unwrap();
        assert!(serde_json::from_str::<Value>(json).is_ok());
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_matches("2049:123456", 2049, 123456));
        assert!(!journal_stream_matches("2049:123456", 2049, 7));
        assert!(!journal_stream_matches("2049", 2049, 123456));
        assert!(!journal_stream_matches("x:y", 0, 0));
        assert!(!journal_stream_matches("", 0, 0));
    }
}
